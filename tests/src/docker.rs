//! Docker for the end-to-end tests: the engine check, the local base image, cleanup by label.
//!
//! The Docker tests run in the ordinary `cargo nextest run --workspace`. On a machine without a
//! Docker engine they skip with a loud message, except under `CI=true`, where a missing engine is
//! a failure (CI must not pass by skipping). The base image is built locally by
//! `scripts/base-image.sh` (there may be no registry to pull from) the first time a test needs it,
//! under a file lock so parallel test processes build it once.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

/// The image the tests run: Debian bookworm (minbase) with ca-certificates, curl, git, python3.
pub const BASE_IMAGE: &str = "moat-base:bookworm";

/// The label every test object carries (value: the [`TestLabel`]'s id), so cleanup finds it.
pub const TEST_LABEL: &str = "moat.test";

/// Whether a Docker engine answers `docker version`. Under `CI=true` a missing engine panics;
/// elsewhere it prints a loud skip message for `test` and returns false (the test returns).
///
/// ```no_run
/// if !moat_tests::docker::available("my_test") {
///     return;
/// }
/// ```
pub fn available(test: &str) -> bool {
    static REACHABLE: OnceLock<Result<(), String>> = OnceLock::new();
    let reachable = REACHABLE.get_or_init(|| {
        match Command::new("docker")
            .args(["version", "--format", "{{.Server.Version}}"])
            .output()
        {
            Ok(out) if out.status.success() => Ok(()),
            Ok(out) => Err(String::from_utf8_lossy(&out.stderr).trim().to_owned()),
            Err(e) => Err(format!("cannot run the docker CLI: {e}")),
        }
    });
    match reachable {
        Ok(()) => true,
        Err(why) if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("CI=true and no Docker engine answers ({why}): the Docker tests must run in CI")
        }
        Err(why) => {
            eprintln!(
                "\n!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n\
                 !!! SKIPPED {test}: no Docker engine ({why})\n\
                 !!! Start Docker (or set DOCKER_HOST) to run the Docker tests.\n\
                 !!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n"
            );
            false
        }
    }
}

/// The repository's root (where `scripts/` is).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is inside the repository")
        .to_owned()
}

/// Make sure [`BASE_IMAGE`] exists, building it with `scripts/base-image.sh` when it does not
/// (about a minute; needs root and a Debian mirror). Several test processes calling this at once
/// build it once: the build runs under an exclusive lock on a file in the temp directory.
///
/// # Panics
///
/// When the script fails, with its output.
pub fn ensure_base_image() -> &'static str {
    if image_exists(BASE_IMAGE) {
        return BASE_IMAGE;
    }
    let lock_path = std::env::temp_dir().join("moat-tests-base-image.lock");
    let lock = File::create(&lock_path)
        .unwrap_or_else(|e| panic!("creating {}: {e}", lock_path.display()));
    lock.lock()
        .unwrap_or_else(|e| panic!("locking {}: {e}", lock_path.display()));
    // Another process may have built it while we waited.
    if !image_exists(BASE_IMAGE) {
        eprintln!("building {BASE_IMAGE} with scripts/base-image.sh (about a minute)");
        let out = Command::new("bash")
            .arg(repo_root().join("scripts/base-image.sh"))
            .arg(BASE_IMAGE)
            .output()
            .expect("running scripts/base-image.sh");
        assert!(
            out.status.success() && image_exists(BASE_IMAGE),
            "scripts/base-image.sh failed ({}):\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    drop(lock);
    BASE_IMAGE
}

/// Whether the engine has an image of that reference.
pub fn image_exists(image: &str) -> bool {
    docker(&["image", "inspect", image]).status.success()
}

/// Run the docker CLI (for checks and cleanup outside the code under test).
pub fn docker(args: &[&str]) -> Output {
    Command::new("docker")
        .args(args)
        .output()
        .expect("running the docker CLI")
}

/// A label unique to one test; dropping it removes every container, network and image that
/// carries it (also when the test panicked).
#[derive(Debug)]
pub struct TestLabel {
    id: String,
}

impl TestLabel {
    /// A fresh id: `<prefix>-<pid>-<nanos>`, also usable in names (lowercase, digits, `-`).
    pub fn new(prefix: &str) -> TestLabel {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        TestLabel {
            id: format!("{prefix}-{}-{nanos}", std::process::id()),
        }
    }

    /// The id (the label's value), e.g. for names of the test's objects.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// `(TEST_LABEL, id)`, to put in a container's, network's or image's labels.
    pub fn pair(&self) -> (String, String) {
        (TEST_LABEL.to_owned(), self.id.clone())
    }

    /// The `docker ... --filter` value.
    pub fn filter(&self) -> String {
        format!("label={TEST_LABEL}={}", self.id)
    }

    /// Containers, networks and images still carrying the label.
    pub fn leftovers(&self) -> Vec<String> {
        let filter = self.filter();
        let mut left = Vec::new();
        for (kind, args) in [
            ("container", vec!["ps", "-aq", "--filter", &filter]),
            ("network", vec!["network", "ls", "-q", "--filter", &filter]),
            ("image", vec!["images", "-q", "--filter", &filter]),
        ] {
            let out = docker(&args);
            for id in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                left.push(format!("{kind} {id}"));
            }
        }
        left
    }
}

impl Drop for TestLabel {
    fn drop(&mut self) {
        let filter = self.filter();
        let ids = |args: &[&str]| -> Vec<String> {
            String::from_utf8_lossy(&docker(args).stdout)
                .split_whitespace()
                .map(str::to_owned)
                .collect()
        };
        let containers = ids(&["ps", "-aq", "--filter", &filter]);
        if !containers.is_empty() {
            let mut args = vec!["rm", "-f"];
            args.extend(containers.iter().map(String::as_str));
            docker(&args);
        }
        for network in ids(&["network", "ls", "-q", "--filter", &filter]) {
            docker(&["network", "rm", &network]);
        }
        for image in ids(&["images", "-q", "--filter", &filter]) {
            docker(&["rmi", "-f", &image]);
        }
    }
}
