//! A hermetic environment for running the real `moat` binary.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use assert_cmd::Command;
use tempfile::TempDir;

use crate::ca::TestCa;
use crate::github::fake_github;
use crate::https::FakeHttps;

/// How long a command from [`MoatEnv::cmd`] or [`MoatEnv::command`] may run before it is killed
/// (so a moat that waits forever fails its test instead of hanging the suite). Override per
/// command with `assert_cmd::Command::timeout`.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// The directories searched after [`MoatEnv::bin_dir`] in the child `PATH`.
pub const SYSTEM_PATH: &str = "/usr/bin:/bin";

/// The path of the built `moat` binary, next to the test binary's directory.
///
/// Test binaries live in `target/<profile>/deps/`, the `moat` binary in `target/<profile>/`.
/// (`CARGO_BIN_EXE_moat` only exists inside the `moat` package itself.)
///
/// `cargo test --workspace` and `cargo nextest run --workspace` build the binary first;
/// `cargo test -p moat-tests` does not, and may run a stale one: build it with
/// `cargo build -p moat`.
///
/// # Panics
///
/// If the binary is not there, with a message saying to run `cargo build -p moat`.
pub fn moat_bin() -> PathBuf {
    let path = expected_moat_bin();
    assert!(
        path.is_file(),
        "the moat binary is not built: expected it at {}.\n\
         Run `cargo build -p moat` first (or run the whole workspace: \
         `cargo test --workspace` / `cargo nextest run --workspace` build it).",
        path.display()
    );
    path
}

/// Where [`moat_bin`] looks for the binary, whether or not it exists.
pub(crate) fn expected_moat_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("the path of the running test binary");
    let mut dir = exe
        .parent()
        .expect("the test binary is in a directory")
        .to_path_buf();
    if dir.file_name() == Some(OsStr::new("deps")) {
        dir.pop();
    }
    dir.join(format!("moat{}", std::env::consts::EXE_SUFFIX))
}

/// Quotes `s` for a POSIX shell: `'...'` with embedded `'` escaped.
pub fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// A temporary, isolated environment for one test's moat invocations.
///
/// Layout of the temporary directory ([`MoatEnv::root`], deleted on drop):
///
/// - `home/`: moat's home ([`MoatEnv::home`], passed as `MOAT_HOME`);
/// - `bin/`: fake tools ([`MoatEnv::fake_tool`]), first in the child `PATH`;
/// - `work/`: the child's working directory;
/// - `calls/`: one `<tool>.log` per fake tool, a line per invocation ([`MoatEnv::tool_calls`]);
/// - `ca/test-ca.pem`: the PEM of this environment's [`TestCa`].
///
/// The root itself is the child's `HOME`, so nothing of the real user's home is read.
///
/// Servers started through the environment ([`MoatEnv::with_github`]) live as long as it does.
pub struct MoatEnv {
    // Fields drop in order: stop the servers before deleting the directory.
    github: Option<FakeHttps>,
    ca: TestCa,
    ca_pem: PathBuf,
    vars: BTreeMap<OsString, OsString>,
    home: PathBuf,
    bin: PathBuf,
    work: PathBuf,
    calls: PathBuf,
    dir: TempDir,
}

impl std::fmt::Debug for MoatEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MoatEnv")
            .field("root", &self.dir.path())
            .field("vars", &self.vars)
            .field("github", &self.github)
            .finish_non_exhaustive()
    }
}

impl Default for MoatEnv {
    fn default() -> Self {
        Self::new()
    }
}

impl MoatEnv {
    /// Creates the temporary directory, its subdirectories and a fresh [`TestCa`] written to
    /// `ca/test-ca.pem`. No extra variables are set yet.
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("moat-test-")
            .tempdir()
            .expect("create a temporary directory");
        let root = dir.path();
        let [home, bin, work, calls] = ["home", "bin", "work", "calls"].map(|name| {
            let path = root.join(name);
            std::fs::create_dir(&path)
                .unwrap_or_else(|err| panic!("cannot create {}: {err}", path.display()));
            path
        });
        let ca = TestCa::new();
        let ca_pem = ca.write_pem(root.join("ca"));
        MoatEnv {
            github: None,
            ca,
            ca_pem,
            vars: BTreeMap::new(),
            home,
            bin,
            work,
            calls,
            dir,
        }
    }

    /// The temporary directory (also the child's `HOME`).
    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// moat's home directory, passed as `MOAT_HOME`. Created empty.
    pub fn home(&self) -> &Path {
        &self.home
    }

    /// The directory of fake tools, first in the child `PATH`.
    pub fn bin_dir(&self) -> &Path {
        &self.bin
    }

    /// The child's working directory. Created empty.
    pub fn work_dir(&self) -> &Path {
        &self.work
    }

    /// This environment's certificate authority: sign fake servers' certificates with it.
    pub fn ca(&self) -> &TestCa {
        &self.ca
    }

    /// The PEM file of [`MoatEnv::ca`], for `MOAT_EXTRA_CA_CERTS`.
    pub fn ca_pem(&self) -> &Path {
        &self.ca_pem
    }

    /// Sets `key=value` in the environment of every later command (overriding the defaults of
    /// [`MoatEnv::vars`] if `key` is one of them).
    pub fn set(&mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> &mut Self {
        self.vars
            .insert(key.as_ref().to_owned(), value.as_ref().to_owned());
        self
    }

    /// The complete environment of the commands this environment builds, sorted by name:
    ///
    /// - `PATH` = `<bin dir>:/usr/bin:/bin`
    /// - `HOME` = [`MoatEnv::root`]
    /// - `MOAT_HOME` = [`MoatEnv::home`]
    /// - `MOAT_KEYRING_BACKEND` = `file`
    /// - `NO_COLOR` = `1`
    ///
    /// then every variable from [`MoatEnv::set`] (and [`MoatEnv::with_github`]).
    pub fn vars(&self) -> Vec<(OsString, OsString)> {
        let mut path = self.bin.clone().into_os_string();
        path.push(":");
        path.push(SYSTEM_PATH);
        let mut vars: BTreeMap<OsString, OsString> = [
            ("PATH", path),
            ("HOME", self.root().as_os_str().to_owned()),
            ("MOAT_HOME", self.home.as_os_str().to_owned()),
            ("MOAT_KEYRING_BACKEND", "file".into()),
            ("NO_COLOR", "1".into()),
        ]
        .into_iter()
        .map(|(key, value)| (OsString::from(key), value))
        .collect();
        vars.extend(self.vars.clone());
        vars.into_iter().collect()
    }

    /// A command running the real `moat` binary ([`moat_bin`]) in this environment; see
    /// [`MoatEnv::command`].
    pub fn cmd(&self) -> Command {
        self.command(moat_bin())
    }

    /// A command running `program` in this environment: cleared environment then exactly
    /// [`MoatEnv::vars`], working directory [`MoatEnv::work_dir`], a [`DEFAULT_TIMEOUT`].
    /// `assert_cmd` gives it an empty stdin unless the test writes one (`write_stdin`).
    ///
    /// A bare `program` name is looked up in the child's `PATH`, so `env.command("gh")` runs a
    /// fake `gh` from [`MoatEnv::bin_dir`].
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut cmd = Command::new(program);
        cmd.env_clear()
            .envs(self.vars())
            .current_dir(&self.work)
            .timeout(DEFAULT_TIMEOUT);
        cmd
    }

    /// Starts [`fake_github`] (signed by [`MoatEnv::ca`]) accepting `valid_token` as `login`,
    /// sets `MOAT_GITHUB_API_URL` to its URL and `MOAT_EXTRA_CA_CERTS` to [`MoatEnv::ca_pem`],
    /// and keeps it running as long as the environment. Replaces an earlier fake GitHub.
    pub fn with_github(mut self, valid_token: &str, login: &str) -> Self {
        self.start_github(valid_token, login);
        self
    }

    /// [`MoatEnv::with_github`] for an environment held by `&mut`; returns the server.
    pub fn start_github(&mut self, valid_token: &str, login: &str) -> &FakeHttps {
        let server = fake_github(&self.ca, valid_token, login);
        self.set("MOAT_GITHUB_API_URL", server.url());
        let ca_pem = self.ca_pem.clone();
        self.set("MOAT_EXTRA_CA_CERTS", ca_pem);
        self.github.insert(server)
    }

    /// The fake GitHub started by [`MoatEnv::with_github`], to inspect its requests.
    ///
    /// # Panics
    ///
    /// If none was started.
    pub fn github(&self) -> &FakeHttps {
        self.github
            .as_ref()
            .expect("no fake GitHub: build the MoatEnv with .with_github(token, login)")
    }

    /// Writes an executable `#!/bin/sh` script `name` into [`MoatEnv::bin_dir`] and returns its
    /// path. Before `script_body` runs, the script appends its arguments (joined by spaces, one
    /// line per invocation) to `calls/<name>.log`; see [`MoatEnv::tool_calls`].
    ///
    /// The script sees only the child environment ([`MoatEnv::vars`]); quote values you splice
    /// into `script_body` with [`sh_quote`].
    pub fn fake_tool(&self, name: &str, script_body: &str) -> PathBuf {
        assert!(
            !name.is_empty() && !name.contains('/'),
            "fake tool name must be a plain file name, got {name:?}"
        );
        let log = self.calls.join(format!("{name}.log"));
        let log = sh_quote(log.to_str().expect("temporary paths are UTF-8"));
        let script = format!("#!/bin/sh\nprintf '%s\\n' \"$*\" >> {log}\n{script_body}\n");
        let path = self.bin.join(name);
        // Write then rename: an executable is never seen half-written.
        let partial = self.bin.join(format!(".{name}.partial"));
        std::fs::write(&partial, script)
            .unwrap_or_else(|err| panic!("cannot write {}: {err}", partial.display()));
        std::fs::set_permissions(&partial, std::fs::Permissions::from_mode(0o755))
            .unwrap_or_else(|err| panic!("cannot chmod {}: {err}", partial.display()));
        std::fs::rename(&partial, &path)
            .unwrap_or_else(|err| panic!("cannot create {}: {err}", path.display()));
        path
    }

    /// A fake GitHub CLI `gh` (see [`MoatEnv::fake_tool`]).
    ///
    /// - `Some(token)`: `gh auth token [any options]` prints `token` and a newline, exits 0;
    /// - `None`: `gh auth token` prints `no oauth token found for github.com` to stderr and
    ///   exits 1, like a gh that is not logged in.
    ///
    /// Any other subcommand prints `fake gh: unsupported: <args>` to stderr and exits 1.
    pub fn fake_gh(&self, token: Option<&str>) -> PathBuf {
        let answer = match token {
            Some(token) => format!("  printf '%s\\n' {}\n  exit 0", sh_quote(token)),
            None => "  echo 'no oauth token found for github.com' >&2\n  exit 1".to_owned(),
        };
        self.fake_tool(
            "gh",
            &format!(
                "if [ \"$1\" = auth ] && [ \"$2\" = token ]; then\n{answer}\nfi\n\
                 echo \"fake gh: unsupported: $*\" >&2\nexit 1"
            ),
        )
    }

    /// The invocations of fake tool `name` so far, one entry per run: its arguments joined by
    /// spaces. Empty if it never ran (or does not exist).
    pub fn tool_calls(&self, name: &str) -> Vec<String> {
        match std::fs::read_to_string(self.calls.join(format!("{name}.log"))) {
            Ok(log) => log.lines().map(str::to_owned).collect(),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(err) => panic!("cannot read the call log of {name}: {err}"),
        }
    }
}
