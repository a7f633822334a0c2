//! Pinning: a credential granted through a plugin goes back only to the same executable.
//!
//! Being on `PATH` is not trust, and a plugin can be replaced after it was granted a token (by an
//! update, or by anyone who can write to a directory on `PATH`). When a plugin grants (or
//! refreshes) a credential, moat records the SHA-256 of the executable it ran in the credential's
//! metadata under [`PIN_KEY`]; before handing a stored credential to a plugin process, moat
//! compares that process's executable with the pin and refuses on a mismatch, telling the user to
//! grant again if the change was theirs. Credentials stored before pinning carry no pin and are
//! handed over as before.
//!
//! The file is hashed *before* the process that gets the credential is started (a process that
//! is already running, started unhashed, is replaced by one that is), so a program cannot pass
//! the check by putting the real plugin back in its place once it runs. On Linux moat then checks
//! that the process runs the very file it hashed (`/proc/<pid>/exe`, same device and inode),
//! which closes the gap between hashing and starting for native executables. A script runs its
//! interpreter, which reads the script by path: for scripts the pin covers the file's contents
//! when it was started, no more.

use std::io::{self, Read};
use std::path::Path;

use sha2::{Digest, Sha256};

/// The metadata key of the pin (shown by `moat grant show`).
pub const PIN_KEY: &str = "moat.plugin_sha256";

/// The SHA-256 of a file's contents, lower-case hex.
pub fn sha256_file(path: &Path) -> io::Result<String> {
    HashedFile::read_blocking(path).map(HashedFile::into_sha256)
}

/// An executable about to be started, hashed.
pub(crate) struct HashedFile {
    sha256: String,
    /// Device and inode of the file that was read, to recognise it as the running executable.
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    identity: (u64, u64),
    /// A script (`#!`): what runs is its interpreter, so only the file itself can be checked.
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    script: bool,
}

impl HashedFile {
    /// Hashes `path`, off the async threads.
    pub(crate) async fn read(path: &Path) -> io::Result<HashedFile> {
        let path = path.to_path_buf();
        let hashed = tokio::task::spawn_blocking(move || HashedFile::read_blocking(&path));
        hashed.await.map_err(io::Error::other)?
    }

    fn read_blocking(path: &Path) -> io::Result<HashedFile> {
        let mut file = std::fs::File::open(path)?;
        #[cfg(unix)]
        let identity = {
            use std::os::unix::fs::MetadataExt;
            let meta = file.metadata()?;
            (meta.dev(), meta.ino())
        };
        #[cfg(not(unix))]
        let identity = (0, 0);
        let mut hasher = Sha256::new();
        let mut first = [0u8; 2];
        let mut seen = 0;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = file.read(&mut buf)?;
            if n == 0 {
                break;
            }
            let take = (first.len() - seen).min(n);
            first[seen..seen + take].copy_from_slice(&buf[..take]);
            seen += take;
            hasher.update(&buf[..n]);
        }
        Ok(HashedFile {
            sha256: format!("{:x}", hasher.finalize()),
            identity,
            script: &first == b"#!",
        })
    }

    /// The digest, lower-case hex.
    pub(crate) fn into_sha256(self) -> String {
        self.sha256
    }

    /// Whether process `pid` runs the file that was hashed. On Linux, `/proc/<pid>/exe` names the
    /// very file the kernel executed, so a file swapped in between the hash and the start is
    /// caught; a script's process runs its interpreter, which proves nothing either way.
    pub(crate) fn is_running(&self, pid: Option<u32>) -> bool {
        #[cfg(target_os = "linux")]
        {
            use std::os::unix::fs::MetadataExt;
            if self.script {
                return true;
            }
            let Some(pid) = pid else { return false };
            match std::fs::metadata(format!("/proc/{pid}/exe")) {
                Ok(meta) => (meta.dev(), meta.ino()) == self.identity,
                Err(_) => false,
            }
        }
        #[cfg(not(target_os = "linux"))]
        {
            let _ = pid;
            true
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_digest_is_sha256_in_hex() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"abc").unwrap();
        assert_eq!(
            sha256_file(&path).unwrap(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert!(sha256_file(&dir.path().join("missing")).is_err());
        assert!(!HashedFile::read_blocking(&path).unwrap().script);
        std::fs::write(&path, b"#!/bin/sh\n").unwrap();
        assert!(HashedFile::read_blocking(&path).unwrap().script);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_hashed_file_is_recognised_as_the_running_executable_by_inode() {
        let me = std::env::current_exe().unwrap();
        let hashed = HashedFile::read_blocking(&me).unwrap();
        assert!(hashed.is_running(Some(std::process::id())));
        let other = HashedFile {
            identity: (hashed.identity.0, hashed.identity.1.wrapping_add(1)),
            ..hashed
        };
        assert!(!other.is_running(Some(std::process::id())));
        assert!(!other.is_running(None));
        // A script's process runs its interpreter: nothing to compare.
        let script = HashedFile {
            script: true,
            ..other
        };
        assert!(script.is_running(Some(std::process::id())));
    }
}
