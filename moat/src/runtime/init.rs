//! The init step: a POSIX sh script moat mounts into every container as its entrypoint.
//!
//! Mounted, not baked into an image, so it also works on images moat did not build, and a new
//! moat does not need a rebuild. The script ([`SCRIPT`], `moat-init.sh` beside this file) starts
//! as root, adds moat's CA to the system bundle, installs the strict policy's firewall when asked,
//! then drops to the workspace owner's uid:gid without capabilities and `exec`s the command, so
//! the command is PID 1 and its exit code is the container's.
//!
//! What it expects:
//!
//! | what | where |
//! | --- | --- |
//! | the script's directory | host dir from [`InitScript::install`], read-only at [`INIT_DIR`] |
//! | moat's CA certificate | a host dir with `ca.crt`, read-only at [`CA_DIR`] (optional) |
//! | `MOAT_UID`, `MOAT_GID` | the uid/gid to run the command as (0 = stay root) |
//! | `MOAT_FIREWALL` | `<proxy ip>:<port>`: allow only that (needs `NET_ADMIN` and `iptables`) |
//!
//! [`InitScript::apply`] sets all of that on a [`ContainerSpec`].

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::error::RuntimeError;
use super::{BindMount, ContainerSpec};

/// The script's text.
pub const SCRIPT: &str = include_str!("moat-init.sh");

/// Where the script's directory is mounted in the container.
pub const INIT_DIR: &str = "/moat/init";

/// Where the files providers ask for are staged, read-only, laid out as under the container's
/// home; the script copies them into `/home/moatuser` and gives them to the user.
pub const INIT_FILES_DIR: &str = "/moat/init-files";

/// The script's file name in [`INIT_DIR`].
pub const SCRIPT_NAME: &str = "moat-init.sh";

/// Where moat's CA directory is mounted (the script reads `ca.crt` there). The `SSL_CERT_FILE`
/// family of variables should point at [`CA_FILE`].
pub const CA_DIR: &str = "/etc/ssl/certs/moat-ca";

/// The CA certificate in the container.
pub const CA_FILE: &str = "/etc/ssl/certs/moat-ca/ca.crt";

/// The container's exit code when the init step failed and the command never ran (firewall
/// missing, setpriv missing, bad variables). The script says why on stderr.
pub const EXIT_INIT_FAILED: i64 = 125;

/// How the init step should set up one container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitOptions {
    /// The uid to run the command as (the workspace's owner; 0 stays root).
    pub uid: u32,
    /// The gid to run the command as.
    pub gid: u32,
    /// The proxy's address: allow only this (strict policy). Adds `NET_ADMIN` to the container.
    pub firewall: Option<SocketAddr>,
}

impl InitOptions {
    /// Run as the owner of `path` (the workspace), no firewall.
    pub fn owner_of(path: &Path) -> Result<InitOptions, RuntimeError> {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(path)
            .map_err(|e| RuntimeError::io(format!("reading the owner of {}", path.display()), e))?;
        Ok(InitOptions {
            uid: meta.uid(),
            gid: meta.gid(),
            firewall: None,
        })
    }
}

/// The script written on the host, ready to mount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitScript {
    dir: PathBuf,
}

impl InitScript {
    /// Write the script to `<base>/<hash>/moat-init.sh` (0644, directory 0755) unless it is
    /// already there. The directory is named by the script's hash, so runs of different moat
    /// versions never share one, and it holds nothing else (it is mounted whole). Safe when
    /// several runs install at once (temp file + rename).
    pub fn install(base: &Path) -> Result<InitScript, RuntimeError> {
        use std::os::unix::fs::PermissionsExt;
        let digest = Sha256::digest(SCRIPT.as_bytes());
        let hex: String = digest[..6].iter().map(|b| format!("{b:02x}")).collect();
        let dir = base.join(format!("init-{hex}"));
        let path = dir.join(SCRIPT_NAME);
        if std::fs::read(&path).is_ok_and(|text| text == SCRIPT.as_bytes()) {
            return Ok(InitScript { dir });
        }
        let io = |what: &str, e| RuntimeError::io(format!("{what} {}", dir.display()), e);
        std::fs::create_dir_all(&dir).map_err(|e| io("creating", e))?;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))
            .map_err(|e| io("setting permissions of", e))?;
        crate::home::atomic_write(&path, SCRIPT.as_bytes(), 0o644)
            .map_err(|e| io("writing into", e))?;
        Ok(InitScript { dir })
    }

    /// The host directory to mount at [`INIT_DIR`].
    pub fn host_dir(&self) -> &Path {
        &self.dir
    }

    /// Make `spec` run its command through the init step: entrypoint, start as root, the
    /// script's mount, `MOAT_UID`/`MOAT_GID`, and under a firewall `MOAT_FIREWALL` plus
    /// `NET_ADMIN`. The command (`spec.cmd`) is unchanged. Any env of the same names set before
    /// is replaced, so call it after the env is complete (a user's `-e MOAT_UID=0` must not win).
    pub fn apply(&self, spec: &mut ContainerSpec, options: &InitOptions) {
        spec.entrypoint = Some(vec!["/bin/sh".into(), format!("{INIT_DIR}/{SCRIPT_NAME}")]);
        spec.user = Some("0:0".into());
        spec.mounts.retain(|m| m.target != INIT_DIR);
        spec.mounts.push(BindMount {
            source: self.dir.clone(),
            target: INIT_DIR.into(),
            read_only: true,
        });
        spec.env.insert("MOAT_UID".into(), options.uid.to_string());
        spec.env.insert("MOAT_GID".into(), options.gid.to_string());
        spec.env.remove("MOAT_FIREWALL");
        spec.env.remove("MOAT_TTY_SIZE");
        if let (true, Some((rows, cols))) = (spec.tty, spec.console_size) {
            spec.env
                .insert("MOAT_TTY_SIZE".into(), format!("{rows}x{cols}"));
        }
        if let Some(proxy) = options.firewall {
            spec.env.insert("MOAT_FIREWALL".into(), proxy.to_string());
            if !spec.cap_add.iter().any(|c| c == "NET_ADMIN") {
                spec.cap_add.push("NET_ADMIN".into());
            }
        }
    }
}

/// Mount a host directory holding `ca.crt` at [`CA_DIR`], read-only.
pub fn mount_ca(spec: &mut ContainerSpec, host_dir: &Path) {
    spec.mounts.retain(|m| m.target != CA_DIR);
    spec.mounts.push(BindMount {
        source: host_dir.to_owned(),
        target: CA_DIR.into(),
        read_only: true,
    });
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn install_writes_the_script_once_in_a_hashed_directory() {
        let base = tempfile::tempdir().unwrap();
        let init = InitScript::install(base.path()).unwrap();
        let path = init.host_dir().join(SCRIPT_NAME);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), SCRIPT);
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o644
        );
        assert!(
            init.host_dir()
                .file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with("init-")
        );
        // Only the script is in the mounted directory.
        assert_eq!(std::fs::read_dir(init.host_dir()).unwrap().count(), 1);
        // Installing again reuses it; a damaged copy is replaced.
        assert_eq!(InitScript::install(base.path()).unwrap(), init);
        std::fs::write(&path, "garbage").unwrap();
        InitScript::install(base.path()).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), SCRIPT);
    }

    #[test]
    fn a_tty_gets_its_starting_size_through_the_init_step() {
        let base = tempfile::tempdir().unwrap();
        let init = InitScript::install(base.path()).unwrap();
        let options = InitOptions {
            uid: 1000,
            gid: 1000,
            firewall: None,
        };
        let mut spec = ContainerSpec::new("n", "img", ["sh"]);
        spec.console_size = Some((30, 100));
        init.apply(&mut spec, &options);
        assert_eq!(spec.env.get("MOAT_TTY_SIZE"), None, "no TTY, no size");
        spec.tty = true;
        init.apply(&mut spec, &options);
        assert_eq!(
            spec.env.get("MOAT_TTY_SIZE").map(String::as_str),
            Some("30x100")
        );
    }

    #[test]
    fn apply_sets_entrypoint_root_mount_and_env() {
        let base = tempfile::tempdir().unwrap();
        let init = InitScript::install(base.path()).unwrap();
        let mut spec = ContainerSpec::new("n", "img", ["id", "-u"]);
        spec.env.insert("MOAT_FIREWALL".into(), "stale".into());
        init.apply(
            &mut spec,
            &InitOptions {
                uid: 1234,
                gid: 99,
                firewall: None,
            },
        );
        assert_eq!(
            spec.entrypoint.as_deref().unwrap(),
            ["/bin/sh", "/moat/init/moat-init.sh"]
        );
        assert_eq!(spec.cmd, ["id", "-u"]);
        assert_eq!(spec.user.as_deref(), Some("0:0"));
        assert_eq!(spec.env["MOAT_UID"], "1234");
        assert_eq!(spec.env["MOAT_GID"], "99");
        assert!(!spec.env.contains_key("MOAT_FIREWALL"));
        assert!(spec.cap_add.is_empty());
        assert_eq!(
            spec.mounts,
            [BindMount {
                source: init.host_dir().to_owned(),
                target: "/moat/init".into(),
                read_only: true
            }]
        );

        let firewall = InitOptions {
            uid: 0,
            gid: 0,
            firewall: Some("172.18.0.1:19080".parse().unwrap()),
        };
        init.apply(&mut spec, &firewall);
        init.apply(&mut spec, &firewall);
        assert_eq!(spec.env["MOAT_FIREWALL"], "172.18.0.1:19080");
        assert_eq!(spec.cap_add, ["NET_ADMIN"]);
        assert_eq!(spec.mounts.len(), 1, "applying twice mounts once");

        mount_ca(&mut spec, Path::new("/ca"));
        assert!(spec.mounts.contains(&BindMount {
            source: "/ca".into(),
            target: CA_DIR.into(),
            read_only: true
        }));
    }

    #[test]
    fn owner_of_reads_uid_and_gid() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let meta = std::fs::metadata(dir.path()).unwrap();
        let options = InitOptions::owner_of(dir.path()).unwrap();
        assert_eq!((options.uid, options.gid), (meta.uid(), meta.gid()));
        assert!(InitOptions::owner_of(Path::new("/nonexistent/moat")).is_err());
    }

    #[test]
    fn the_script_is_valid_posix_sh() {
        // `sh -n` parses without running; dash is /bin/sh on Debian, the strictest common one.
        let out = std::process::Command::new("/bin/sh")
            .args(["-n", "-c", SCRIPT])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
