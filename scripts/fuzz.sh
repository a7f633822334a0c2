#!/usr/bin/env bash
# Runs every fuzz target (fuzz/, cargo fuzz + libFuzzer) for SECONDS each (default 60), one after
# the other, one job each, on the committed seed corpus (fuzz/corpus/<target>/; what a run finds
# is kept in fuzz/target/corpus/<target>/, not committed). Stops at the first crash, hang (a run
# over 60 s) or leak (LeakSanitizer), and leaves the reproducer in fuzz/artifacts/<target>/.
#
#   scripts/fuzz.sh            # 60 s per target
#   scripts/fuzz.sh 600        # the long run of RELIABILITY.md
#   scripts/fuzz.sh 5          # CI's smoke run
#   TARGETS="proxy_front moat_yaml" scripts/fuzz.sh 30
#
# Needs cargo-fuzz (cargo install cargo-fuzz --locked). The stable toolchain builds the targets
# with RUSTC_BOOTSTRAP=1 (cargo fuzz needs -Z flags); a nightly toolchain works as well.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

seconds="${1:-60}"
targets="${TARGETS:-plugin_stdout sdk_serve proxy_front network_rule credential_file moat_yaml provider_file upstream_websocket}"
export RUSTC_BOOTSTRAP=1
# Plain `cargo fuzz` picks the default toolchain; a toolchain file elsewhere must not change that.
export CARGO_TARGET_DIR="$PWD/target"

# Every target at once (one build); quiet unless it fails.
cargo fuzz build --release --debug-assertions >/dev/null 2>&1 || cargo fuzz build --release --debug-assertions

for target in $targets; do
  work="target/corpus/$target"
  mkdir -p "$work" "artifacts/$target"
  echo "--- fuzz $target: ${seconds}s"
  started=$(date +%s)
  # New inputs go to the work corpus (first directory); the seeds are read, never written.
  set +e
  cargo fuzz run --release --debug-assertions "$target" "$work" "corpus/$target" -- \
    -max_total_time="$seconds" -timeout=60 -rss_limit_mb=2048 -detect_leaks=1 \
    -max_len=65536 -print_final_stats=1 >"target/fuzz-$target.log" 2>&1
  status=$?
  set -e
  grep -E '^(#[0-9]+ *DONE|==[0-9]+==ERROR|SUMMARY|stat::number_of_executed_units|stat::peak_rss_mb|stat::new_units_added|INFO: Seed: )' \
    "target/fuzz-$target.log" | sed 's/^/    /' || true
  if [ "$status" -ne 0 ]; then
    echo "fuzz $target failed (exit $status); see fuzz/target/fuzz-$target.log and fuzz/artifacts/$target/" >&2
    tail -n 40 "target/fuzz-$target.log" >&2
    exit "$status"
  fi
  echo "    $target: $(( $(date +%s) - started ))s, $(ls "$work" | wc -l) inputs in the work corpus"
done
