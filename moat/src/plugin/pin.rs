//! Pinning: a credential granted through a plugin goes back only to the same executable.
//!
//! Being on `PATH` is not trust, and a plugin can be replaced after it was granted a token (by an
//! update, or by anyone who can write to a directory on `PATH`). When a plugin grants (or
//! refreshes) a credential, moat records the SHA-256 of the executable it ran in the credential's
//! metadata under [`PIN_KEY`]; before handing a stored credential to a plugin process, moat
//! compares that process's executable with the pin and refuses on a mismatch, telling the user to
//! grant again if the change was theirs. Credentials stored before pinning carry no pin and are
//! handed over as before.

use std::io::{self, Read};
use std::path::Path;

use sha2::{Digest, Sha256};

/// The metadata key of the pin (shown by `moat grant show`).
pub const PIN_KEY: &str = "moat.plugin_sha256";

/// The SHA-256 of a file's contents, lower-case hex.
pub fn sha256_file(path: &Path) -> io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(format!("{:x}", hasher.finalize()))
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
    }
}
