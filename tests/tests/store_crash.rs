//! Crash consistency of the credential store, with the real binary (RELIABILITY.md):
//!
//! - `moat grant github` killed with SIGKILL at random points while it validates and writes,
//!   alone and with concurrent writers in other processes: afterwards the credential file holds
//!   the old value or one of the new ones, always readable, and the key file never changes once
//!   it exists (on a fresh home too, where the killed writers race to create it);
//! - a full disk (`MOAT_HOME` on a 64 KiB tmpfs, filled up): `moat grant` fails with a clear
//!   error naming the cause, and what was stored before is still there and readable; once space
//!   is back, the grant succeeds.
//!
//! `MOAT_CRASH_ITERATIONS` sets the number of kill rounds (default 25, for CI); the long run of
//! RELIABILITY.md uses thousands.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use moat::credential::{CredentialStore, KeyConfig};
use moat::home::MoatHome;
use moat_tests::{FakeHttps, MoatEnv, Recorded, Reply};

/// Tokens this fake GitHub accepts: any with this prefix.
const PREFIX: &str = "ghp_crashTest";

fn token(n: u64) -> String {
    format!("{PREFIX}{n:020}")
}

fn iterations() -> u64 {
    std::env::var("MOAT_CRASH_ITERATIONS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(25)
}

/// xorshift64*, seeded from the clock (the seed is printed, so a failure can be replayed with
/// `MOAT_CRASH_SEED`).
struct Rng(u64);

impl Rng {
    fn new() -> Rng {
        let seed = std::env::var("MOAT_CRASH_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
            });
        eprintln!("MOAT_CRASH_SEED={seed}");
        Rng(seed | 1)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n.max(1)
    }
}

/// A fake GitHub accepting every token with [`PREFIX`].
fn env_with_github() -> (MoatEnv, FakeHttps) {
    let mut env = MoatEnv::new();
    let github = FakeHttps::start(env.ca(), |request: &Recorded| {
        let valid = request
            .header("authorization")
            .is_some_and(|auth| auth.starts_with(&format!("Bearer {PREFIX}")));
        if request.path_only() != "/user" {
            Reply::not_found()
        } else if valid {
            Reply::json(200, serde_json::json!({ "login": "octocat", "id": 1 }))
        } else {
            Reply::json(401, serde_json::json!({ "message": "Bad credentials" }))
        }
    });
    env.set("MOAT_GITHUB_API_URL", github.url());
    let ca_pem = env.ca_pem().to_owned();
    env.set("MOAT_EXTRA_CA_CERTS", ca_pem);
    (env, github)
}

fn spawn_grant(env: &MoatEnv, home: &Path, token: &str) -> Child {
    Command::new(moat_tests::moat_bin())
        .env_clear()
        .envs(env.vars())
        .env("MOAT_HOME", home)
        .env("GITHUB_TOKEN", token)
        .args(["grant", "github"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn grant(env: &MoatEnv, home: &Path, token: &str) -> std::process::Output {
    spawn_grant(env, home, token).wait_with_output().unwrap()
}

/// The stored token, or why it cannot be read.
fn stored(home: &Path) -> Result<String, String> {
    let store = CredentialStore::open(&MoatHome::at(home), None, KeyConfig::file());
    store
        .load("github")
        .map(|credential| credential.token.expose().to_owned())
        .map_err(|err| err.to_string())
}

fn key_file(home: &Path) -> PathBuf {
    home.join("encryption.key")
}

/// Kills `child` (SIGKILL) after `delay`, unless it ended by then; true if it was killed.
fn kill_after(child: &mut Child, delay: Duration) -> bool {
    let deadline = Instant::now() + delay;
    while Instant::now() < deadline {
        if child.try_wait().unwrap().is_some() {
            return false;
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    let killed = child.try_wait().unwrap().is_none() && child.kill().is_ok();
    let _ = child.wait();
    killed
}

#[test]
fn a_grant_killed_at_any_point_leaves_the_old_or_the_new_credential_and_the_same_key() {
    let (env, _github) = env_with_github();
    let home = env.home().to_owned();
    let mut rng = Rng::new();

    // How long a whole grant takes here, to spread the kills over it.
    let started = Instant::now();
    let first = grant(&env, &home, &token(0));
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let span = started.elapsed().as_micros() as u64;
    let key = std::fs::read(key_file(&home)).expect("the key file exists after a grant");
    let mut current = token(0);
    let (mut killed, mut finished) = (0, 0);
    for n in 1..=iterations() {
        let new = token(n);
        let mut child = spawn_grant(&env, &home, &new);
        let delay = Duration::from_micros(rng.below(span + span / 4));
        if kill_after(&mut child, delay) {
            killed += 1;
        } else {
            finished += 1;
        }
        let now = stored(&home).unwrap_or_else(|err| {
            panic!("round {n}: the credential is unreadable after a kill: {err}")
        });
        assert!(
            now == current || now == new,
            "round {n}: the store holds neither the old nor the new credential"
        );
        current = now;
        assert_eq!(
            std::fs::read(key_file(&home)).unwrap(),
            key,
            "round {n}: the key changed"
        );
    }
    eprintln!(
        "{killed} grants killed, {finished} finished first; the store was consistent after each"
    );
    assert!(killed > 0, "no grant was killed: the kill delays are off");
}

#[test]
fn concurrent_writers_some_killed_leave_one_of_their_values_and_one_key() {
    let (env, _github) = env_with_github();
    let mut rng = Rng::new();
    let rounds = iterations().div_ceil(5).max(3);
    for round in 0..rounds {
        // A fresh home each round: the writers also race to create the key.
        let home = env.root().join(format!("home-{round}"));
        std::fs::create_dir(&home).unwrap();
        let tokens: Vec<String> = (0..4).map(|w| token(round * 10 + w)).collect();
        let mut children: Vec<Child> = tokens.iter().map(|t| spawn_grant(&env, &home, t)).collect();
        // Kill two of the four at random moments; the others finish.
        let victims = [rng.below(4) as usize, rng.below(4) as usize];
        for (i, child) in children.iter_mut().enumerate() {
            if victims.contains(&i) {
                kill_after(child, Duration::from_micros(rng.below(60_000)));
            }
        }
        let mut succeeded = Vec::new();
        for (i, child) in children.into_iter().enumerate() {
            let output = child.wait_with_output().unwrap();
            if !victims.contains(&i) {
                assert!(
                    output.status.success(),
                    "round {round}: a writer that was not killed failed: {}",
                    String::from_utf8_lossy(&output.stderr)
                );
            }
            if output.status.success() {
                succeeded.push(i);
            }
        }
        let key = std::fs::read(key_file(&home)).expect("a key exists once a writer finished");
        let now = stored(&home)
            .unwrap_or_else(|err| panic!("round {round}: the credential is unreadable: {err}"));
        assert!(
            tokens.contains(&now),
            "round {round}: the store holds a value none of the writers wrote"
        );
        // The key the survivors used is the one on disk, and a later grant keeps it.
        let last = token(round * 10 + 9);
        assert!(grant(&env, &home, &last).status.success());
        assert_eq!(stored(&home).unwrap(), last);
        assert_eq!(
            std::fs::read(key_file(&home)).unwrap(),
            key,
            "round {round}: the key changed"
        );
    }
}

/// A tmpfs of `size` mounted at `dir`, unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Result<Tmpfs, String> {
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        let output = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(dir)
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if output.status.success() {
            Ok(Tmpfs(dir.to_owned()))
        } else {
            Err(String::from_utf8_lossy(&output.stderr).trim().to_owned())
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// Fills the filesystem of `dir` until a write fails; returns the filler file.
fn fill(dir: &Path) -> PathBuf {
    use std::io::Write as _;
    let path = dir.join("filler");
    let mut file = std::fs::File::create(&path).unwrap();
    let chunk = vec![0u8; 1024];
    while file
        .write_all(&chunk)
        .and_then(|()| file.sync_all())
        .is_ok()
    {}
    // A last byte at a time, so not even a small file fits.
    while file.write_all(&[0]).and_then(|()| file.sync_all()).is_ok() {}
    path
}

#[test]
fn a_full_disk_is_a_clear_error_and_loses_nothing_stored_before() {
    let (env, _github) = env_with_github();
    let home = env.root().join("small-home");
    let _mount = match Tmpfs::mount(&home, "64k") {
        Ok(mount) => mount,
        Err(reason) => {
            eprintln!(
                "SKIPPED: cannot mount a 64 KiB tmpfs for MOAT_HOME ({reason}); this test needs \
                 root (or CAP_SYS_ADMIN) to simulate a full disk"
            );
            return;
        }
    };
    let old = token(1);
    let first = grant(&env, &home, &old);
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let key = std::fs::read(key_file(&home)).unwrap();
    let filler = fill(&home);

    let output = grant(&env, &home, &token(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success(),
        "a grant on a full disk succeeded: {stderr}"
    );
    assert!(
        stderr.contains("No space left on device") && stderr.contains("github"),
        "the error names the cause and the credential: {stderr}"
    );
    assert!(
        !stderr.contains(&token(2)),
        "the error shows the token: {stderr}"
    );
    assert_eq!(
        stored(&home).unwrap(),
        old,
        "the credential stored before is intact"
    );
    assert_eq!(std::fs::read(key_file(&home)).unwrap(), key);
    let strays: Vec<_> = std::fs::read_dir(home.join("credentials"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .filter(|name| name.to_string_lossy().contains(".tmp-"))
        .collect();
    assert!(strays.is_empty(), "the failed write left {strays:?}");

    // Space again: the same grant goes through.
    std::fs::remove_file(filler).unwrap();
    let output = grant(&env, &home, &token(3));
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(stored(&home).unwrap(), token(3));
}
