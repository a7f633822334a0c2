#!/usr/bin/env bash
# Build moat's base image locally, for machines that cannot pull from a container registry.
#
#   scripts/base-image.sh [TAG]        (default TAG: moat-base:bookworm)
#
# It bootstraps a minimal Debian bookworm with debootstrap (ca-certificates, curl, git, python3)
# and imports it into the Docker engine. Then point moat at it:
#
#   MOAT_BASE_IMAGE=moat-base:bookworm moat run -- echo hello
#
# The tests use this image too (the first Docker test calls this script, under a lock, when the
# tag is missing: `moat_tests::docker::ensure_base_image`). An image
# that already exists is left alone. Needs root (debootstrap), debootstrap itself (installed with
# apt-get when absent) and a Debian package mirror (MOAT_DEBIAN_MIRROR, default deb.debian.org).
set -euo pipefail

tag="${1:-moat-base:bookworm}"
mirror="${MOAT_DEBIAN_MIRROR:-http://deb.debian.org/debian}"

if docker image inspect "$tag" >/dev/null 2>&1; then
  echo "base image $tag already present"
  exit 0
fi

if ! command -v debootstrap >/dev/null 2>&1; then
  echo "--- installing debootstrap"
  apt-get update -qq && apt-get install -y -qq debootstrap >/dev/null
fi

root="$(mktemp -d "${TMPDIR:-/tmp}/moat-base.XXXXXX")"
trap 'rm -rf "$root"' EXIT

echo "--- debootstrap bookworm into $root (about a minute)"
debootstrap --variant=minbase --include=ca-certificates,curl,git,python3 bookworm "$root" "$mirror" >"$root.log" 2>&1 \
  || { tail -20 "$root.log" >&2; rm -f "$root.log"; exit 1; }
rm -f "$root.log"
# Keep the image small: no package lists or caches.
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin

echo "--- importing as $tag"
tar -C "$root" -c . | docker import --change 'CMD ["/bin/bash"]' - "$tag" >/dev/null
echo "base image $tag ready"
