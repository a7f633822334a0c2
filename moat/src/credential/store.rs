//! [`CredentialStore`]: credentials as encrypted files, one per store key.
//!
//! Layout: `<credentials dir>/<store key>.enc`, mode `0600`, in a directory of mode `0700`
//! (`$MOAT_HOME/credentials`, or `credentials/profiles/<p>` for a profile). The encryption key is
//! managed by [`super::key`].
//!
//! # File format
//!
//! Version 1, written by this code:
//!
//! ```text
//! "MOAT" (4 bytes) | version 0x01 | nonce (12 bytes) | AES-256-GCM ciphertext ‖ tag (16 bytes)
//! ```
//!
//! The plaintext is the credential's JSON. The AEAD associated data is the 5 header bytes followed
//! by the store key. That binds each file to its name and format:
//!
//! - a file copied or renamed to another provider's name (`github.enc` → `npm.enc`) fails to
//!   decrypt, so one provider can never be handed another's token;
//! - a flipped bit anywhere, header included, fails to decrypt;
//! - the version byte lets a later format be added without guessing.
//!
//! Files written by the Go implementation have no header: `nonce ‖ ciphertext ‖ tag`, no
//! associated data. They are still read (anything that does not start with `MOAT`, and, as a
//! last resort, a file whose v1 reading fails, in case a legacy nonce happened to begin with
//! `MOAT`), but every save writes version 1. Trying the legacy reading cannot weaken a v1 file:
//! without the key nobody can forge a valid legacy ciphertext either.
//!
//! # Errors
//!
//! Every failure is a [`StoreError`] naming the store key and, where it helps, the file and a
//! hint. Nothing is skipped silently: [`CredentialStore::list`] returns one entry per `.enc` file
//! with its own result. Errors never contain key material or token bytes.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use aes_gcm::aead::{Aead, AeadCore, OsRng, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use moat_plugin_sdk::Credential;
use zeroize::Zeroize as _;

use super::key::{EncryptionKey, KeyConfig, KeyError, KeyManager};
use crate::home::{MoatHome, Profile, atomic_write, ensure_private_dir};

/// Magic bytes opening a versioned credential file.
const MAGIC: &[u8; 4] = b"MOAT";
/// The format written by [`CredentialStore::save`].
const VERSION_1: u8 = 1;
/// `MAGIC` plus the version byte.
const HEADER_LEN: usize = MAGIC.len() + 1;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
/// File name extension of credential files.
const EXTENSION: &str = "enc";

/// Errors of the credential store.
#[derive(thiserror::Error, Debug)]
pub enum StoreError {
    /// The store key cannot be used as a file name.
    #[error("invalid credential name {key:?}: {reason}")]
    InvalidKey {
        /// The rejected key.
        key: String,
        /// Why.
        reason: &'static str,
    },
    /// No file for this store key.
    #[error("no credential found for {key}")]
    NotFound {
        /// The store key.
        key: String,
        /// The store's profile, for the hint's command.
        profile: Option<Profile>,
    },
    /// Too short to hold a nonce and a tag, or an unknown format version.
    #[error("credential file for {key} is corrupted or truncated ({})", path.display())]
    Corrupted {
        /// The store key.
        key: String,
        /// The file.
        path: PathBuf,
        /// The store's profile, for the hint's command.
        profile: Option<Profile>,
    },
    /// Authentication failed: another key, a tampered file, or a file renamed from another key.
    #[error(
        "decrypting credential for {key}: the encryption key may have changed (for example \
         after an upgrade or a keyring reset)"
    )]
    Decrypt {
        /// The store key.
        key: String,
        /// The file.
        path: PathBuf,
        /// The store's profile, for the hint's command.
        profile: Option<Profile>,
    },
    /// Decrypted, but the content is not a credential.
    #[error(
        "credential file for {key} decrypted but does not hold a valid credential ({}): {detail}",
        path.display()
    )]
    InvalidContent {
        /// The store key.
        key: String,
        /// The file.
        path: PathBuf,
        /// Where the JSON went wrong (never the content itself).
        detail: String,
        /// The store's profile, for the hint's command.
        profile: Option<Profile>,
    },
    /// The credential could not be encoded or encrypted.
    #[error("encrypting credential for {key} failed")]
    Encrypt {
        /// The store key.
        key: String,
    },
    /// A filesystem operation failed.
    #[error("{action} {}: {source}", path.display())]
    Io {
        /// The store key concerned, if any.
        key: Option<String>,
        /// What moat was doing (`reading`, `writing`, ...).
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// The encryption key could not be found, read or created.
    #[error(transparent)]
    Key(#[from] KeyError),
}

impl StoreError {
    /// The store key the error is about, if it is about one.
    pub fn store_key(&self) -> Option<&str> {
        match self {
            StoreError::InvalidKey { key, .. }
            | StoreError::NotFound { key, .. }
            | StoreError::Corrupted { key, .. }
            | StoreError::Decrypt { key, .. }
            | StoreError::InvalidContent { key, .. }
            | StoreError::Encrypt { key } => Some(key),
            StoreError::Io { key, .. } => key.as_deref(),
            StoreError::Key(_) => None,
        }
    }

    /// True when there is no credential under the key.
    pub fn is_not_found(&self) -> bool {
        matches!(self, StoreError::NotFound { .. })
    }

    /// What the user can do about it, when moat knows. A command it names carries the store's
    /// `--profile`.
    pub fn hint(&self) -> Option<String> {
        match self {
            StoreError::NotFound { key, profile } => Some(format!(
                "Run '{}' to store a credential",
                grant_command(key, profile.as_ref())
            )),
            StoreError::Corrupted { key, profile, .. }
            | StoreError::InvalidContent { key, profile, .. } => Some(format!(
                "Run '{}' to store the credential again",
                grant_command(key, profile.as_ref())
            )),
            StoreError::Decrypt { key, profile, .. } => Some(format!(
                "To re-authenticate: {}",
                grant_command(key, profile.as_ref())
            )),
            StoreError::Key(e) => e.hint(),
            StoreError::InvalidKey { .. } | StoreError::Encrypt { .. } | StoreError::Io { .. } => {
                None
            }
        }
    }
}

/// The command that stores a credential under `store_key` (`oauth:notion` →
/// `moat grant oauth notion`), with `--profile <p>` for a profile's store.
fn grant_command(store_key: &str, profile: Option<&Profile>) -> String {
    let command = match store_key.split_once(':') {
        Some((kind @ ("oauth" | "mcp"), name)) => format!("moat grant {kind} {name}"),
        _ => format!("moat grant {store_key}"),
    };
    with_profile(command, profile)
}

/// `command` with ` --profile <p>` appended when `profile` is set: what a hint prints so that
/// the command it suggests works on the same set of credentials.
pub fn with_profile(command: String, profile: Option<&Profile>) -> String {
    match profile {
        Some(profile) => format!("{command} --profile {}", profile.as_str()),
        None => command,
    }
}

/// One `.enc` file found by [`CredentialStore::list`].
#[derive(Debug)]
pub struct StoredEntry {
    /// The store key (file name without `.enc`).
    pub key: String,
    /// The decrypted credential, or why it could not be read.
    pub credential: Result<Credential, StoreError>,
}

/// The encrypted credentials of one moat home and profile.
#[derive(Debug, Clone)]
pub struct CredentialStore {
    dir: PathBuf,
    profile: Option<Profile>,
    keys: KeyManager,
}

impl CredentialStore {
    /// The store for `profile` (or the default one) in `home`. Touches neither the filesystem nor
    /// the key.
    pub fn open(home: &MoatHome, profile: Option<&Profile>, keys: KeyConfig) -> CredentialStore {
        CredentialStore {
            dir: home.credentials_dir(profile),
            profile: profile.cloned(),
            keys: KeyManager::new(home, keys),
        }
    }

    /// The profile whose credentials these are (`None`: the default set).
    pub fn profile(&self) -> Option<&Profile> {
        self.profile.as_ref()
    }

    /// The directory holding the `.enc` files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file for `store_key` (whether or not it exists; the key is not validated).
    pub fn path_of(&self, store_key: &str) -> PathBuf {
        self.dir.join(format!("{store_key}.{EXTENSION}"))
    }

    /// Encrypts and writes `cred` under `store_key`, replacing any previous one atomically.
    /// Creates the encryption key if there is none yet. Returns the file written.
    pub fn save(&self, store_key: &str, cred: &Credential) -> Result<PathBuf, StoreError> {
        validate_store_key(store_key)?;
        let path = self.path_of(store_key);
        ensure_private_dir(&self.dir).map_err(|source| StoreError::Io {
            key: Some(store_key.to_owned()),
            action: "creating",
            path: self.dir.clone(),
            source,
        })?;
        let key = self.keys.get_or_create()?;

        let encrypt_err = || StoreError::Encrypt {
            key: store_key.to_owned(),
        };
        let mut json = serde_json::to_vec(cred).map_err(|_| encrypt_err())?;
        let sealed = seal(&key, store_key, &json);
        json.zeroize();
        let bytes = sealed.ok_or_else(encrypt_err)?;

        atomic_write(&path, &bytes, 0o600).map_err(|source| StoreError::Io {
            key: Some(store_key.to_owned()),
            action: "writing",
            path: path.clone(),
            source,
        })?;
        Ok(path)
    }

    /// Reads and decrypts the credential under `store_key`. Never creates a key: with no key,
    /// an existing file is a [`StoreError::Decrypt`].
    pub fn load(&self, store_key: &str) -> Result<Credential, StoreError> {
        validate_store_key(store_key)?;
        let key = self.keys.get()?;
        self.load_with(store_key, &self.path_of(store_key), key.as_ref())
    }

    /// Every `.enc` file of the store, sorted by key, each with its own result: a corrupted or
    /// undecryptable file is reported, never skipped, and never hides the others. A missing
    /// directory is an empty list. Fails as a whole only if the directory cannot be read or the
    /// encryption key is unusable.
    pub fn list(&self) -> Result<Vec<StoredEntry>, StoreError> {
        let dir_err = |source| StoreError::Io {
            key: None,
            action: "reading",
            path: self.dir.clone(),
            source,
        };
        let entries = match fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(dir_err(e)),
        };

        let mut files = Vec::new();
        for entry in entries {
            let entry = entry.map_err(dir_err)?;
            let path = entry.path();
            if path.extension().is_none_or(|ext| ext != EXTENSION) {
                continue;
            }
            let Some(stem) = path.file_stem() else {
                continue;
            };
            files.push((stem.to_string_lossy().into_owned(), path));
        }
        if files.is_empty() {
            return Ok(Vec::new());
        }
        files.sort();

        let key = self.keys.get()?;
        Ok(files
            .into_iter()
            .map(|(store_key, path)| {
                let credential = validate_store_key(&store_key)
                    .and_then(|()| self.load_with(&store_key, &path, key.as_ref()));
                StoredEntry {
                    key: store_key,
                    credential,
                }
            })
            .collect())
    }

    /// Deletes the file of `store_key`, whether or not it can be decrypted. Returns the path
    /// removed; [`StoreError::NotFound`] if there was none.
    pub fn remove(&self, store_key: &str) -> Result<PathBuf, StoreError> {
        validate_store_key(store_key)?;
        let path = self.path_of(store_key);
        match fs::remove_file(&path) {
            Ok(()) => Ok(path),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(StoreError::NotFound {
                key: store_key.to_owned(),
                profile: self.profile.clone(),
            }),
            Err(source) => Err(StoreError::Io {
                key: Some(store_key.to_owned()),
                action: "removing",
                path,
                source,
            }),
        }
    }

    /// Reads `path` and decrypts it as the file of `store_key` with `key`.
    fn load_with(
        &self,
        store_key: &str,
        path: &Path,
        key: Option<&EncryptionKey>,
    ) -> Result<Credential, StoreError> {
        let bytes = match fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(StoreError::NotFound {
                    key: store_key.to_owned(),
                    profile: self.profile.clone(),
                });
            }
            Err(source) => {
                return Err(StoreError::Io {
                    key: Some(store_key.to_owned()),
                    action: "reading",
                    path: path.to_path_buf(),
                    source,
                });
            }
        };

        self.decode(store_key, path, key, &bytes)
    }

    /// Decrypts and parses `bytes`, the content of `path`, as the file of `store_key`.
    fn decode(
        &self,
        store_key: &str,
        path: &Path,
        key: Option<&EncryptionKey>,
        bytes: &[u8],
    ) -> Result<Credential, StoreError> {
        let corrupted = || StoreError::Corrupted {
            key: store_key.to_owned(),
            path: path.to_path_buf(),
            profile: self.profile.clone(),
        };
        let decrypt_err = || StoreError::Decrypt {
            key: store_key.to_owned(),
            path: path.to_path_buf(),
            profile: self.profile.clone(),
        };
        let mut json = match open(key, store_key, bytes) {
            Opened::Plaintext(json) => json,
            Opened::Corrupted => return Err(corrupted()),
            Opened::Failed => return Err(decrypt_err()),
        };
        let parsed = serde_json::from_slice::<Credential>(&json);
        json.zeroize();
        // serde_json's message can quote the input; keep only where it failed.
        parsed.map_err(|e| StoreError::InvalidContent {
            key: store_key.to_owned(),
            path: path.to_path_buf(),
            profile: self.profile.clone(),
            detail: format!(
                "{} error at line {} column {}",
                match e.classify() {
                    serde_json::error::Category::Io => "I/O",
                    serde_json::error::Category::Syntax => "JSON syntax",
                    serde_json::error::Category::Data => "unexpected JSON content",
                    serde_json::error::Category::Eof => "truncated JSON",
                },
                e.line(),
                e.column()
            ),
        })
    }
}

/// Decodes `bytes` as the file of the store key `fuzz-credential` under a fixed key: as they are, or first
/// encrypted with that key when `seal_first` (so the JSON inside is what is read). Error
/// messages are rendered, as the CLI would. The fuzz target `credential_file`.
pub(crate) fn fuzz_decode(bytes: &[u8], seal_first: bool) {
    const STORE_KEY: &str = "fuzz-credential";
    let store = CredentialStore::open(&MoatHome::at("/fuzz/home"), None, KeyConfig::file());
    let key = EncryptionKey::from_bytes([0x5a; 32]);
    let sealed;
    let bytes = if seal_first {
        let Some(out) = seal(&key, STORE_KEY, bytes) else {
            return;
        };
        sealed = out;
        &sealed
    } else {
        bytes
    };
    let path = store.path_of(STORE_KEY);
    for key in [Some(&key), None] {
        if let Err(err) = store.decode(STORE_KEY, &path, key, bytes) {
            let _ = (err.to_string(), err.hint());
        }
    }
}

/// Checks that `key` is usable as a file name inside the store directory.
fn validate_store_key(key: &str) -> Result<(), StoreError> {
    let reason = if key.is_empty() {
        Some("it is empty")
    } else if key.contains(['/', '\\']) {
        Some("it contains a path separator")
    } else if key.contains('\0') {
        Some("it contains a NUL character")
    } else if key.contains("..") {
        Some("it contains \"..\"")
    } else if key.starts_with('.') {
        Some("it starts with \".\"")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(StoreError::InvalidKey {
            key: key.to_owned(),
            reason,
        }),
        None => Ok(()),
    }
}

/// The associated data of a v1 file: header bytes, then the store key.
fn aad_v1(store_key: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(HEADER_LEN + store_key.len());
    aad.extend_from_slice(MAGIC);
    aad.push(VERSION_1);
    aad.extend_from_slice(store_key.as_bytes());
    aad
}

/// Encrypts `plaintext` as a v1 file for `store_key`. `None` only if AES-GCM refuses the input
/// (larger than it can handle).
fn seal(key: &EncryptionKey, store_key: &str, plaintext: &[u8]) -> Option<Vec<u8>> {
    let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
    let aad = aad_v1(store_key);
    let ciphertext = key
        .cipher()
        .encrypt(
            &nonce,
            Payload {
                msg: plaintext,
                aad: &aad,
            },
        )
        .ok()?;
    let mut out = Vec::with_capacity(HEADER_LEN + NONCE_LEN + ciphertext.len());
    out.extend_from_slice(MAGIC);
    out.push(VERSION_1);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&ciphertext);
    Some(out)
}

/// The outcome of reading a credential file.
enum Opened {
    Plaintext(Vec<u8>),
    /// Too short for any format, or an unknown version.
    Corrupted,
    /// Well-formed but does not authenticate (or there is no key).
    Failed,
}

/// Decrypts a credential file of either format. See the module docs for the formats.
fn open(key: Option<&EncryptionKey>, store_key: &str, bytes: &[u8]) -> Opened {
    let legacy_ok = bytes.len() >= NONCE_LEN + TAG_LEN;
    let v1 = match bytes.strip_prefix(MAGIC.as_slice()) {
        None => None,
        Some([VERSION_1, rest @ ..]) if rest.len() >= NONCE_LEN + TAG_LEN => Some(rest),
        // Unknown version or too short for v1: corrupted, unless it happens to be a legacy file
        // whose nonce begins with "MOAT".
        Some(_) => {
            return match (legacy_ok, key.and_then(|k| open_legacy(k, bytes))) {
                (true, Some(plain)) => Opened::Plaintext(plain),
                _ => Opened::Corrupted,
            };
        }
    };
    if v1.is_none() && !legacy_ok {
        return Opened::Corrupted;
    }
    let Some(key) = key else {
        return Opened::Failed;
    };
    if let Some(rest) = v1 {
        let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
        let aad = aad_v1(store_key);
        let opened = key.cipher().decrypt(
            Nonce::from_slice(nonce),
            Payload {
                msg: ciphertext,
                aad: &aad,
            },
        );
        if let Ok(plain) = opened {
            return Opened::Plaintext(plain);
        }
    }
    match open_legacy(key, bytes) {
        Some(plain) => Opened::Plaintext(plain),
        None => Opened::Failed,
    }
}

/// Decrypts the Go format: `nonce ‖ ciphertext ‖ tag`, no associated data.
fn open_legacy(key: &EncryptionKey, bytes: &[u8]) -> Option<Vec<u8>> {
    if bytes.len() < NONCE_LEN + TAG_LEN {
        return None;
    }
    let (nonce, ciphertext) = bytes.split_at(NONCE_LEN);
    key.cipher()
        .decrypt(Nonce::from_slice(nonce), ciphertext)
        .ok()
}

#[cfg(test)]
mod tests {
    use super::super::key::{read_file_key, write_file_key};
    use super::*;
    use std::sync::Arc;

    const TOKEN: &str = "ghp_TOPSECRETtoken1234";

    fn store(home: &Path) -> CredentialStore {
        CredentialStore::open(&MoatHome::at(home), None, KeyConfig::file())
    }

    fn cred(provider: &str) -> Credential {
        Credential::new(provider, TOKEN).with_metadata("token_source", "test")
    }

    fn key_file(home: &Path) -> PathBuf {
        home.join("encryption.key")
    }

    /// Checks the rendering of an error: message, hint, and no secret anywhere.
    fn assert_error(err: &StoreError, message: &str, hint: Option<&str>) {
        let text = err.to_string();
        assert!(
            text.contains(message),
            "{text:?} should contain {message:?}"
        );
        assert_eq!(err.hint().as_deref(), hint, "hint of {text:?}");
        assert!(!text.contains(TOKEN), "{text}");
        assert!(!format!("{err:?}").contains(TOKEN));
    }

    #[cfg(unix)]
    use crate::home::mode_of;

    #[test]
    fn round_trip() {
        let tmp = tempfile::tempdir().unwrap();
        let s = store(tmp.path());
        let mut c = cred("github");
        c.scopes = vec!["repo".into()];
        let path = s.save("github", &c).unwrap();
        assert_eq!(path, tmp.path().join("credentials/github.enc"));
        assert_eq!(path, s.path_of("github"));
        assert_eq!(s.load("github").unwrap(), c);

        // v1 on disk, and the token is not in the clear.
        let bytes = fs::read(&path).unwrap();
        assert_eq!(&bytes[..5], b"MOAT\x01");
        assert!(!bytes.windows(TOKEN.len()).any(|w| w == TOKEN.as_bytes()));

        // Overwrite.
        let c2 = cred("github").with_metadata("login", "octocat");
        s.save("github", &c2).unwrap();
        assert_eq!(s.load("github").unwrap(), c2);

        // Colons are allowed.
        s.save("oauth:notion", &cred("oauth")).unwrap();
        assert_eq!(s.load("oauth:notion").unwrap().provider, "oauth");
    }

    #[test]
    fn open_touches_nothing_and_load_creates_no_key() {
        let tmp = tempfile::tempdir().unwrap();
        let home = tmp.path().join("home");
        let s = store(&home);
        assert!(!home.exists());
        assert!(s.load("github").unwrap_err().is_not_found());
        assert!(s.list().unwrap().is_empty());
        assert!(!home.exists());
    }

    #[test]
    fn profile_isolation() {
        let tmp = tempfile::tempdir().unwrap();
        let home = MoatHome::at(tmp.path());
        let work = Profile::new("work").unwrap();
        let default = CredentialStore::open(&home, None, KeyConfig::file());
        let profiled = CredentialStore::open(&home, Some(&work), KeyConfig::file());

        let mut a = cred("github");
        a.token = "token-default".into();
        let mut b = cred("github");
        b.token = "token-work".into();
        let pa = default.save("github", &a).unwrap();
        let pb = profiled.save("github", &b).unwrap();
        assert_ne!(pa, pb);
        assert_eq!(pb, tmp.path().join("credentials/profiles/work/github.enc"));
        assert_eq!(default.load("github").unwrap(), a);
        assert_eq!(profiled.load("github").unwrap(), b);

        profiled.remove("github").unwrap();
        assert!(profiled.load("github").unwrap_err().is_not_found());
        assert_eq!(default.load("github").unwrap(), a);
        // The profiles directory is not listed as a credential of the default store.
        assert_eq!(default.list().unwrap().len(), 1);
    }

    #[cfg(unix)]
    #[test]
    fn file_modes() {
        let tmp = tempfile::tempdir().unwrap();
        let home = MoatHome::at(tmp.path().join("home"));
        let p = Profile::new("p").unwrap();
        let s = CredentialStore::open(&home, Some(&p), KeyConfig::file());
        let path = s.save("github", &cred("github")).unwrap();
        assert_eq!(mode_of(&path), 0o600);
        assert_eq!(mode_of(s.dir()), 0o700);
        assert_eq!(mode_of(&home.root().join("credentials")), 0o700);
        assert_eq!(mode_of(&home.root().join("credentials/profiles")), 0o700);
        assert_eq!(mode_of(home.root()), 0o700);
        assert_eq!(mode_of(&key_file(home.root())), 0o600);
        assert_eq!(mode_of(&home.root().join("key.lock")), 0o600);
    }

    #[test]
    fn list_is_sorted_and_reports_bad_entries() {
        let tmp = tempfile::tempdir().unwrap();
        let s = store(tmp.path());
        for name in ["npm", "anthropic", "github"] {
            s.save(name, &cred(name)).unwrap();
        }
        fs::write(s.path_of("claude"), b"definitely not a credential file").unwrap();
        fs::write(s.dir().join("notes.txt"), b"ignored").unwrap();

        let entries = s.list().unwrap();
        let keys: Vec<_> = entries.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(keys, ["anthropic", "claude", "github", "npm"]);
        for e in &entries {
            match e.key.as_str() {
                "claude" => assert!(matches!(e.credential, Err(StoreError::Decrypt { .. }))),
                name => assert_eq!(e.credential.as_ref().unwrap().provider, name),
            }
        }
    }

    #[test]
    fn list_without_key_reports_every_file() {
        let tmp = tempfile::tempdir().unwrap();
        let s = store(tmp.path());
        s.save("github", &cred("github")).unwrap();
        fs::remove_file(key_file(tmp.path())).unwrap();
        let entries = s.list().unwrap();
        assert_eq!(entries.len(), 1);
        assert!(matches!(
            entries[0].credential,
            Err(StoreError::Decrypt { .. })
        ));
        assert!(!key_file(tmp.path()).exists(), "list must not create a key");
        assert!(matches!(s.load("github"), Err(StoreError::Decrypt { .. })));
    }

    #[test]
    fn wrong_key() {
        let tmp = tempfile::tempdir().unwrap();
        let s = store(tmp.path());
        s.save("github", &cred("github")).unwrap();
        write_file_key(&key_file(tmp.path()), &EncryptionKey::generate());
        let err = s.load("github").unwrap_err();
        assert!(matches!(err, StoreError::Decrypt { .. }));
        assert_eq!(err.store_key(), Some("github"));
        assert_error(
            &err,
            "decrypting credential for github: the encryption key may have changed (for example \
             after an upgrade or a keyring reset)",
            Some("To re-authenticate: moat grant github"),
        );
    }

    #[test]
    fn truncated_file() {
        let tmp = tempfile::tempdir().unwrap();
        let s = store(tmp.path());
        let path = s.save("github", &cred("github")).unwrap();
        let bytes = fs::read(&path).unwrap();
        for len in [0, 3, 5, 20, HEADER_LEN + NONCE_LEN + TAG_LEN - 1] {
            fs::write(&path, &bytes[..len]).unwrap();
            let err = s.load("github").unwrap_err();
            assert!(
                matches!(err, StoreError::Corrupted { .. }),
                "len {len}: {err}"
            );
            assert_error(
                &err,
                &format!(
                    "credential file for github is corrupted or truncated ({})",
                    path.display()
                ),
                Some("Run 'moat grant github' to store the credential again"),
            );
        }
        // Cut inside the ciphertext: well-formed but fails authentication.
        fs::write(&path, &bytes[..bytes.len() - 1]).unwrap();
        assert!(matches!(s.load("github"), Err(StoreError::Decrypt { .. })));
    }

    #[test]
    fn unknown_version_is_corrupted() {
        let tmp = tempfile::tempdir().unwrap();
        let s = store(tmp.path());
        let path = s.save("github", &cred("github")).unwrap();
        let mut bytes = fs::read(&path).unwrap();
        bytes[4] = 2;
        fs::write(&path, &bytes).unwrap();
        assert!(matches!(
            s.load("github"),
            Err(StoreError::Corrupted { .. })
        ));
    }

    #[test]
    fn any_flipped_bit_fails() {
        let tmp = tempfile::tempdir().unwrap();
        let s = store(tmp.path());
        let path = s.save("github", &cred("github")).unwrap();
        let original = fs::read(&path).unwrap();
        // Header, nonce, ciphertext and tag.
        for i in [
            0,
            4,
            HEADER_LEN,
            HEADER_LEN + NONCE_LEN,
            original.len() / 2,
            original.len() - 1,
        ] {
            let mut bytes = original.clone();
            bytes[i] ^= 0x01;
            fs::write(&path, &bytes).unwrap();
            let err = s.load("github").unwrap_err();
            assert!(
                matches!(
                    err,
                    StoreError::Decrypt { .. } | StoreError::Corrupted { .. }
                ),
                "byte {i}: {err}"
            );
        }
    }

    #[test]
    fn renamed_file_fails() {
        let tmp = tempfile::tempdir().unwrap();
        let s = store(tmp.path());
        let path = s.save("github", &cred("github")).unwrap();
        fs::rename(&path, s.path_of("npm")).unwrap();
        let err = s.load("npm").unwrap_err();
        assert!(matches!(err, StoreError::Decrypt { .. }));
        assert_eq!(err.store_key(), Some("npm"));
    }

    #[test]
    fn legacy_go_format_is_read() {
        let tmp = tempfile::tempdir().unwrap();
        let s = store(tmp.path());
        // Create the key (and directory) through a normal save.
        s.save("anthropic", &cred("anthropic")).unwrap();
        let key = read_file_key(&key_file(tmp.path()));

        let c = cred("github");
        let json = serde_json::to_vec(&c).unwrap();
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        let mut legacy = nonce.to_vec();
        legacy.extend(key.cipher().encrypt(&nonce, json.as_slice()).unwrap());
        fs::write(s.path_of("github"), &legacy).unwrap();
        assert_eq!(s.load("github").unwrap(), c);

        // A Go-format file with a JSON the Go code wrote (field names and RFC 3339 times).
        let go_json = br#"{"provider":"npm","token":"t","scopes":["read"],"created_at":"2024-05-01T10:00:00.123456789Z","metadata":{"token_source":"env"}}"#;
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        let mut legacy = nonce.to_vec();
        legacy.extend(key.cipher().encrypt(&nonce, go_json.as_slice()).unwrap());
        fs::write(s.path_of("npm"), &legacy).unwrap();
        let npm = s.load("npm").unwrap();
        assert_eq!(npm.scopes, ["read"]);
        assert_eq!(npm.token_source(), Some("env"));

        // Re-saving writes v1.
        s.save("github", &c).unwrap();
        assert_eq!(&fs::read(s.path_of("github")).unwrap()[..4], b"MOAT");
        assert_eq!(s.load("github").unwrap(), c);
    }

    #[test]
    fn decrypted_garbage_is_invalid_content() {
        let tmp = tempfile::tempdir().unwrap();
        let s = store(tmp.path());
        s.save("anthropic", &cred("anthropic")).unwrap();
        let key = read_file_key(&key_file(tmp.path()));
        let bytes = seal(
            &key,
            "github",
            br#"{"provider":"github","token":"ghp_TOPSECRETtoken1234"}"#,
        )
        .unwrap();
        fs::write(s.path_of("github"), bytes).unwrap();
        let err = s.load("github").unwrap_err();
        assert!(matches!(err, StoreError::InvalidContent { .. }), "{err}");
        assert_error(
            &err,
            "credential file for github decrypted but does not hold a valid credential",
            Some("Run 'moat grant github' to store the credential again"),
        );
    }

    #[cfg(unix)]
    #[test]
    fn world_readable_key_file_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let s = store(tmp.path());
        s.save("github", &cred("github")).unwrap();
        let kf = key_file(tmp.path());
        fs::set_permissions(&kf, fs::Permissions::from_mode(0o644)).unwrap();

        for err in [
            s.load("github").unwrap_err(),
            s.save("npm", &cred("npm")).unwrap_err(),
            s.list().unwrap_err(),
        ] {
            assert!(matches!(
                err,
                StoreError::Key(KeyError::InsecurePermissions { mode: 0o644, .. })
            ));
            let text = err.to_string();
            assert!(text.contains(&kf.display().to_string()), "{text}");
            assert!(text.contains("0644"), "{text}");
            assert!(
                err.hint()
                    .unwrap()
                    .starts_with(&format!("chmod 600 {}", kf.display()))
            );
        }
        assert!(!s.path_of("npm").exists());

        fs::set_permissions(&kf, fs::Permissions::from_mode(0o600)).unwrap();
        assert!(s.load("github").is_ok());
    }

    #[test]
    fn concurrent_first_saves_agree_on_one_key() {
        let tmp = tempfile::tempdir().unwrap();
        let home = Arc::new(MoatHome::at(tmp.path().join("home")));
        let barrier = Arc::new(std::sync::Barrier::new(8));
        let threads: Vec<_> = (0..8)
            .map(|i| {
                let home = Arc::clone(&home);
                let barrier = Arc::clone(&barrier);
                std::thread::spawn(move || {
                    let s = CredentialStore::open(&home, None, KeyConfig::file());
                    barrier.wait();
                    s.save(&format!("p{i}"), &cred(&format!("p{i}"))).unwrap();
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }

        let s = CredentialStore::open(&home, None, KeyConfig::file());
        let entries = s.list().unwrap();
        assert_eq!(entries.len(), 8);
        for e in entries {
            assert_eq!(e.credential.unwrap().provider, e.key);
        }
        let stray: Vec<_> = fs::read_dir(home.root())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains(".tmp-"))
            .collect();
        assert!(stray.is_empty(), "{stray:?}");
    }

    #[test]
    fn remove_works_on_undecryptable_files() {
        let tmp = tempfile::tempdir().unwrap();
        let s = store(tmp.path());
        let path = s.save("github", &cred("github")).unwrap();
        fs::write(&path, b"garbage").unwrap();
        assert!(s.load("github").is_err());
        assert_eq!(s.remove("github").unwrap(), path);
        assert!(!path.exists());

        let err = s.remove("github").unwrap_err();
        assert!(err.is_not_found());
        assert_error(
            &err,
            "no credential found for github",
            Some("Run 'moat grant github' to store a credential"),
        );
    }

    #[test]
    fn invalid_store_keys_are_rejected() {
        let tmp = tempfile::tempdir().unwrap();
        let s = store(tmp.path());
        for bad in ["", "a/b", "a\\b", "..", "a..b", "../x", ".hidden", "a\0b"] {
            for err in [
                s.save(bad, &cred("x")).unwrap_err(),
                s.load(bad).unwrap_err(),
                s.remove(bad).unwrap_err(),
            ] {
                assert!(
                    matches!(err, StoreError::InvalidKey { .. }),
                    "{bad:?}: {err}"
                );
                assert_eq!(err.store_key(), Some(bad));
            }
        }
        assert!(!tmp.path().join("credentials").exists());
        for good in [
            "github",
            "oauth:notion",
            "mcp:my-server",
            "brave-search",
            "a.b",
        ] {
            validate_store_key(good).unwrap();
        }
    }

    #[test]
    fn hints_name_the_grant_command() {
        assert_eq!(grant_command("github", None), "moat grant github");
        assert_eq!(
            grant_command("oauth:notion", None),
            "moat grant oauth notion"
        );
        assert_eq!(grant_command("mcp:x", None), "moat grant mcp x");
        let err = StoreError::NotFound {
            key: "oauth:notion".into(),
            profile: None,
        };
        assert_eq!(
            err.hint().unwrap(),
            "Run 'moat grant oauth notion' to store a credential"
        );
        // A profile's store names its profile in every command it suggests.
        let tmp = tempfile::tempdir().unwrap();
        let home = MoatHome::at(tmp.path());
        let work = Profile::new("work").unwrap();
        let store = CredentialStore::open(&home, Some(&work), KeyConfig::file());
        let err = store.load("github").unwrap_err();
        assert_eq!(
            err.hint().unwrap(),
            "Run 'moat grant github --profile work' to store a credential"
        );
    }
}
