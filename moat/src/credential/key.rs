//! The encryption key of the credential store: where it lives and how it is created.
//!
//! The key is 32 random bytes, kept as standard base64 text in one of two places:
//!
//! 1. the OS keychain (service `moat`, account `encryption-key`), when [`KeyBackend::Auto`];
//! 2. the file `$MOAT_HOME/encryption.key` (`<service>.key` for another service), mode `0600`,
//!    when the keychain is unavailable or [`KeyBackend::File`] is chosen.
//!
//! **Why a lock.** Two moat processes started at once on a fresh machine would each find no key,
//! each generate one, and the loser's credentials would be encrypted under a key that is then
//! overwritten or ignored: undecryptable forever. Saving a credential therefore holds an
//! exclusive lock on `$MOAT_HOME/key.lock` while it looks for a key and creates one, never
//! overwrites a key that already exists, and re-reads what it stored, so everyone ends up with the
//! key that actually won. Loading and listing only read: no lock, and no key is created.
//!
//! **Why a thread for the keychain.** The Linux secret-service backend drives its own async
//! runtime and can deadlock or panic when called from inside a tokio runtime, and a locked or
//! absent keychain can block. Every keychain call runs on a dedicated thread with a timeout; a
//! failure or timeout falls back to the file, with one warning per process.
//!
//! **Why no new key after a timeout.** A keychain that did not answer in time (a locked keychain,
//! an access prompt nobody has clicked yet) may well hold the key. Creating a file key then would
//! leave two keys, and the credentials stored under the file key unreadable once the keychain
//! answers again. So after a timeout moat uses an existing key file but never creates a key; it
//! stops with an error that says to unlock the keychain or choose the file.
//!
//! **Why the file is refused when readable by others.** The key file decrypts every credential;
//! a group/other permission bit means someone else may have a copy, so moat stops and says how to
//! fix it instead of quietly using it.

use std::fmt;
use std::fs::{self, OpenOptions};
use std::io;
#[cfg(test)]
use std::path::Path;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use aes_gcm::aead::{KeyInit, OsRng};
use aes_gcm::{Aes256Gcm, Key};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use zeroize::Zeroize as _;

use crate::home::{MoatHome, atomic_create_new, ensure_private_dir};

/// Default keychain service name, and the one whose key file is `encryption.key`.
pub const DEFAULT_SERVICE: &str = "moat";
/// Keychain account under which the key is stored.
pub const KEYCHAIN_ACCOUNT: &str = "encryption-key";
/// Key length in bytes (AES-256).
pub const KEY_LEN: usize = 32;
/// How long one keychain call may take before moat gives up on the keychain.
#[cfg(not(test))]
const KEYCHAIN_TIMEOUT: Duration = Duration::from_secs(3);
#[cfg(test)]
const KEYCHAIN_TIMEOUT: Duration = Duration::from_millis(300);

/// Set once a keychain call timed out in this process: the keychain may hold the key without
/// having said so, so no new key is created (see the module docs).
static KEYCHAIN_SILENT: AtomicBool = AtomicBool::new(false);

/// Set once a keychain call has failed in this process: later calls go straight to the file
/// (instead of waiting for another timeout) and the warning is printed once.
static KEYCHAIN_DOWN: AtomicBool = AtomicBool::new(false);

/// Where the key may be kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KeyBackend {
    /// The OS keychain, falling back to the key file when the keychain is unavailable.
    #[default]
    Auto,
    /// The key file only (`MOAT_KEYRING_BACKEND=file`; tests, headless machines).
    File,
}

/// How to find the encryption key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyConfig {
    /// Keychain, or file only.
    pub backend: KeyBackend,
    /// Keychain service name; also names the key file when it is not `moat`.
    pub service: String,
}

impl Default for KeyConfig {
    fn default() -> Self {
        KeyConfig {
            backend: KeyBackend::Auto,
            service: DEFAULT_SERVICE.to_owned(),
        }
    }
}

impl KeyConfig {
    /// From the environment: `MOAT_KEYRING_BACKEND=file` selects [`KeyBackend::File`];
    /// `MOAT_KEYRING_SERVICE` (non-empty) overrides the service name.
    pub fn from_env() -> KeyConfig {
        Self::from_vars(
            std::env::var("MOAT_KEYRING_BACKEND").ok().as_deref(),
            std::env::var("MOAT_KEYRING_SERVICE").ok().as_deref(),
        )
    }

    /// [`KeyConfig::from_env`] with the values passed in.
    fn from_vars(backend: Option<&str>, service: Option<&str>) -> KeyConfig {
        let backend = match backend.map(str::trim) {
            Some(b) if b.eq_ignore_ascii_case("file") => KeyBackend::File,
            Some(b) if !b.is_empty() && !b.eq_ignore_ascii_case("auto") => {
                tracing::warn!(
                    value = b,
                    "ignoring unknown MOAT_KEYRING_BACKEND (expected \"file\")"
                );
                KeyBackend::Auto
            }
            _ => KeyBackend::Auto,
        };
        let service = service
            .filter(|s| !s.is_empty())
            .unwrap_or(DEFAULT_SERVICE)
            .to_owned();
        KeyConfig { backend, service }
    }

    /// File-only key storage with the default service (what tests use).
    pub fn file() -> KeyConfig {
        KeyConfig {
            backend: KeyBackend::File,
            service: DEFAULT_SERVICE.to_owned(),
        }
    }

    /// The fallback key file's name: `encryption.key`, or `<service>.key` for another service
    /// (characters that cannot appear in a file name replaced by `_`).
    fn key_file_name(&self) -> String {
        if self.service == DEFAULT_SERVICE {
            return "encryption.key".to_owned();
        }
        let safe: String = self
            .service
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        format!("{}.key", safe.trim_start_matches('.'))
    }
}

/// Errors finding, reading or creating the encryption key. None of them contains key material.
#[derive(thiserror::Error, Debug)]
pub enum KeyError {
    /// The key file is readable or writable by group or others.
    #[error(
        "refusing to use encryption key file {}: its mode is {mode:04o}, which lets other users read it",
        path.display()
    )]
    InsecurePermissions {
        /// The key file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The stored key is not base64 or not 32 bytes.
    #[error("the encryption key in {location} is malformed: {reason}")]
    Malformed {
        /// `key file <path>` or `the system keychain (service ...)`.
        location: String,
        /// What is wrong, without the value.
        reason: String,
    },
    /// Reading or writing the key file, or taking the lock, failed.
    #[error("{action} {}: {source}", path.display())]
    Io {
        /// What moat was doing (`reading the encryption key file`, `locking`, ...).
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// The keychain did not answer in time, so whether it already holds a key is unknown.
    #[error(
        "the system keychain did not answer within {} s, so moat cannot tell whether it already \
         holds the credential store's key; it created no new key, which could leave the \
         credentials stored under the old one unreadable",
        waited.as_secs_f32()
    )]
    KeychainSilent {
        /// How long moat waited for one keychain call.
        waited: Duration,
    },
    /// Neither the keychain nor the key file could store a new key.
    #[error(
        "cannot store the encryption key: the system keychain is unavailable ({keychain}) and \
         writing {} failed: {source}",
        file.display()
    )]
    NoStorage {
        /// Why the keychain failed.
        keychain: String,
        /// The key file.
        file: PathBuf,
        /// Why the file failed.
        source: io::Error,
    },
}

impl KeyError {
    /// What the user can do about it.
    pub fn hint(&self) -> Option<String> {
        match self {
            KeyError::InsecurePermissions { path, .. } => Some(format!(
                "chmod 600 {}\n(or delete it and re-grant your credentials if it may have leaked)",
                path.display()
            )),
            KeyError::Malformed { .. } => Some(
                "Restore the original key, or remove it and re-grant your credentials \
                 (credentials encrypted with the old key cannot be recovered)"
                    .to_owned(),
            ),
            KeyError::Io { .. } => None,
            KeyError::KeychainSilent { .. } => Some(
                "Unlock the system keychain (or answer its access prompt) and run the command \
                 again; to keep the key in a file under $MOAT_HOME instead, set \
                 MOAT_KEYRING_BACKEND=file"
                    .to_owned(),
            ),
            KeyError::NoStorage { file, .. } => Some(format!(
                "Make {} writable, or unlock the system keychain; set MOAT_KEYRING_BACKEND=file \
                 to skip the keychain",
                file.parent().unwrap_or(file).display()
            )),
        }
    }
}

/// A 32-byte AES-256 key. `Debug` never prints it and its bytes are wiped on drop.
pub(crate) struct EncryptionKey([u8; KEY_LEN]);

impl EncryptionKey {
    /// A fresh random key from the OS RNG.
    pub(crate) fn generate() -> EncryptionKey {
        let mut generated = Aes256Gcm::generate_key(OsRng);
        let key = EncryptionKey(generated.into());
        generated.as_mut_slice().zeroize();
        key
    }

    /// A key of the given bytes (the fuzz target's fixed key).
    pub(crate) fn from_bytes(bytes: [u8; KEY_LEN]) -> EncryptionKey {
        EncryptionKey(bytes)
    }

    /// Parses the stored text form (standard base64, surrounding whitespace ignored).
    /// `location` only names the source in the error.
    fn from_base64(
        text: &str,
        location: impl FnOnce() -> String,
    ) -> Result<EncryptionKey, KeyError> {
        // The decode error would quote an offending character of the key: leave it out.
        let Ok(mut bytes) = BASE64.decode(text.trim()) else {
            return Err(KeyError::Malformed {
                location: location(),
                reason: "not valid base64".to_owned(),
            });
        };
        let result = match <[u8; KEY_LEN]>::try_from(bytes.as_slice()) {
            Ok(array) => Ok(EncryptionKey(array)),
            Err(_) => Err(KeyError::Malformed {
                location: location(),
                reason: format!("{} bytes instead of {KEY_LEN}", bytes.len()),
            }),
        };
        bytes.zeroize();
        result
    }

    /// The stored text form. Wiped when dropped.
    fn to_base64(&self) -> KeyText {
        KeyText(BASE64.encode(self.0))
    }

    /// The AES-256-GCM cipher for this key.
    pub(crate) fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&self.0))
    }

    #[cfg(test)]
    pub(crate) fn same_as(&self, other: &EncryptionKey) -> bool {
        self.0 == other.0
    }
}

impl fmt::Debug for EncryptionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("EncryptionKey([REDACTED])")
    }
}

impl Drop for EncryptionKey {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

/// Key text (base64) that is wiped when dropped.
struct KeyText(String);

impl Drop for KeyText {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

/// Finds (and, for writers, creates) the key for one moat home and [`KeyConfig`].
#[derive(Debug, Clone)]
pub(crate) struct KeyManager {
    root: PathBuf,
    config: KeyConfig,
}

impl KeyManager {
    pub(crate) fn new(home: &MoatHome, config: KeyConfig) -> KeyManager {
        KeyManager {
            root: home.root().to_path_buf(),
            config,
        }
    }

    /// The fallback key file.
    pub(crate) fn key_file(&self) -> PathBuf {
        self.root.join(self.config.key_file_name())
    }

    /// The lock file serialising key creation.
    pub(crate) fn lock_file(&self) -> PathBuf {
        self.root.join("key.lock")
    }

    /// The existing key, if there is one. Creates nothing and takes no lock.
    pub(crate) fn get(&self) -> Result<Option<EncryptionKey>, KeyError> {
        if self.keychain_enabled() {
            match keychain_get(&self.config.service) {
                Ok(Some(key)) => return Ok(Some(key)),
                Ok(None) => {}
                Err(KeychainError::Malformed(reason)) => {
                    return Err(KeyError::Malformed {
                        location: self.keychain_location(),
                        reason,
                    });
                }
                Err(KeychainError::Unavailable(reason)) => keychain_failed(&reason),
            }
        }
        self.read_key_file()
    }

    /// The key, creating and storing one if none exists. Race-free across processes: see the
    /// module docs.
    pub(crate) fn get_or_create(&self) -> Result<EncryptionKey, KeyError> {
        let _lock = self.lock()?;
        if let Some(key) = self.get()? {
            return Ok(key);
        }
        self.refuse_after_keychain_timeout()?;

        let key = EncryptionKey::generate();
        let mut keychain_failure = None;
        if self.keychain_enabled() {
            match keychain_set(&self.config.service, &key) {
                Ok(()) => match keychain_get(&self.config.service) {
                    Ok(Some(stored)) => return Ok(stored),
                    Ok(None) => {
                        keychain_failure = Some("the stored key could not be read back".to_owned())
                    }
                    Err(KeychainError::Malformed(reason) | KeychainError::Unavailable(reason)) => {
                        keychain_failure = Some(reason)
                    }
                },
                Err(reason) => keychain_failure = Some(reason),
            }
            if let Some(reason) = &keychain_failure {
                keychain_failed(reason);
            }
            // A store that timed out may still complete: the keychain would then hold this key,
            // and a file key written now would be a second one.
            self.refuse_after_keychain_timeout()?;
        } else if self.config.backend == KeyBackend::Auto {
            keychain_failure = Some("it failed earlier in this process".to_owned());
        }

        let file = self.key_file();
        let text = key.to_base64();
        match atomic_create_new(&file, text.0.as_bytes(), 0o600) {
            // Created, or someone who ignores the lock beat us to it: either way, re-read.
            Ok(_) => {}
            Err(source) => {
                return Err(match keychain_failure {
                    Some(keychain) => KeyError::NoStorage {
                        keychain,
                        file,
                        source,
                    },
                    None => KeyError::Io {
                        action: "writing the encryption key file",
                        path: file,
                        source,
                    },
                });
            }
        }
        self.read_key_file()?.ok_or_else(|| KeyError::Io {
            action: "reading back the encryption key file",
            path: self.key_file(),
            source: io::Error::new(
                io::ErrorKind::NotFound,
                "it disappeared after being written",
            ),
        })
    }

    /// Takes the exclusive lock on `key.lock`, creating the home if needed. Released on drop.
    fn lock(&self) -> Result<fs::File, KeyError> {
        let path = self.lock_file();
        let io_err = |action, source| KeyError::Io {
            action,
            path: path.clone(),
            source,
        };
        ensure_private_dir(&self.root).map_err(|e| KeyError::Io {
            action: "creating",
            path: self.root.clone(),
            source: e,
        })?;
        let mut options = OpenOptions::new();
        options.read(true).write(true).create(true).truncate(false);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let file = options
            .open(&path)
            .map_err(|e| io_err("opening the lock file", e))?;
        file.lock().map_err(|e| io_err("locking", e))?;
        Ok(file)
    }

    /// The key file's key, if the file exists.
    fn read_key_file(&self) -> Result<Option<EncryptionKey>, KeyError> {
        let path = self.key_file();
        let io_err = |source| KeyError::Io {
            action: "reading the encryption key file",
            path: path.clone(),
            source,
        };
        let metadata = match fs::metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err(e)),
        };
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = metadata.permissions().mode() & 0o7777;
            if mode & 0o077 != 0 {
                return Err(KeyError::InsecurePermissions { path, mode });
            }
        }
        #[cfg(not(unix))]
        let _ = metadata;
        let text = KeyText(fs::read_to_string(&path).map_err(io_err)?);
        EncryptionKey::from_base64(&text.0, || format!("key file {}", path.display())).map(Some)
    }

    /// With the keychain in use, no key is created once a keychain call timed out.
    fn refuse_after_keychain_timeout(&self) -> Result<(), KeyError> {
        if self.config.backend == KeyBackend::Auto && KEYCHAIN_SILENT.load(Ordering::Relaxed) {
            return Err(KeyError::KeychainSilent {
                waited: KEYCHAIN_TIMEOUT,
            });
        }
        Ok(())
    }

    fn keychain_enabled(&self) -> bool {
        self.config.backend == KeyBackend::Auto && !KEYCHAIN_DOWN.load(Ordering::Relaxed)
    }

    fn keychain_location(&self) -> String {
        format!(
            "the system keychain (service {:?}, account {KEYCHAIN_ACCOUNT:?})",
            self.config.service
        )
    }
}

/// Records a keychain failure; the first one in the process logs the fallback warning.
fn keychain_failed(reason: &str) {
    if !KEYCHAIN_DOWN.swap(true, Ordering::Relaxed) {
        tracing::warn!(
            reason,
            "system keychain unavailable, using file-based key storage"
        );
    }
}

enum KeychainError {
    /// The keychain could not be used; the reason is safe to show.
    Unavailable(String),
    /// The keychain holds something that is not a key; the reason is safe to show.
    Malformed(String),
}

fn keychain_get(service: &str) -> Result<Option<EncryptionKey>, KeychainError> {
    let location = format!("the system keychain (service {service:?})");
    let result = on_keychain_thread(service, move |entry| match entry.get_password() {
        Ok(text) => {
            let text = KeyText(text);
            Ok(Some(EncryptionKey::from_base64(&text.0, || location)))
        }
        Err(keyring::Error::NoEntry) => Ok(None),
        Err(e) => Err(describe(&e)),
    });
    match result {
        Ok(Some(Ok(key))) => Ok(Some(key)),
        Ok(Some(Err(KeyError::Malformed { reason, .. }))) => Err(KeychainError::Malformed(reason)),
        Ok(Some(Err(other))) => Err(KeychainError::Malformed(other.to_string())),
        Ok(None) => Ok(None),
        Err(reason) => Err(KeychainError::Unavailable(reason)),
    }
}

fn keychain_set(service: &str, key: &EncryptionKey) -> Result<(), String> {
    let text = key.to_base64();
    on_keychain_thread(service, move |entry| {
        entry.set_password(&text.0).map_err(|e| describe(&e))
    })
}

/// Runs `op` on a keychain entry on its own thread, giving up after [`KEYCHAIN_TIMEOUT`]. A
/// timed-out thread is left to finish on its own.
fn on_keychain_thread<T, F>(service: &str, op: F) -> Result<T, String>
where
    T: Send + 'static,
    F: FnOnce(&keyring::Entry) -> Result<T, String> + Send + 'static,
{
    let (tx, rx) = mpsc::channel();
    let service = service.to_owned();
    std::thread::Builder::new()
        .name("moat-keychain".to_owned())
        .spawn(move || {
            let result = keyring::Entry::new(&service, KEYCHAIN_ACCOUNT)
                .map_err(|e| describe(&e))
                .and_then(|entry| op(&entry));
            let _ = tx.send(result);
        })
        .map_err(|e| format!("cannot start the keychain thread: {e}"))?;
    match rx.recv_timeout(KEYCHAIN_TIMEOUT) {
        Ok(result) => result,
        Err(mpsc::RecvTimeoutError::Timeout) => {
            KEYCHAIN_SILENT.store(true, Ordering::Relaxed);
            Err(format!(
                "no answer within {:.1} seconds",
                KEYCHAIN_TIMEOUT.as_secs_f32()
            ))
        }
        Err(mpsc::RecvTimeoutError::Disconnected) => Err("the keychain backend crashed".to_owned()),
    }
}

/// A keyring error as text that never contains a stored value.
fn describe(e: &keyring::Error) -> String {
    match e {
        keyring::Error::BadEncoding(_) => "the stored value is not UTF-8".to_owned(),
        keyring::Error::Ambiguous(items) => {
            format!("{} keychain entries match", items.len())
        }
        other => other.to_string(),
    }
}

/// Test support: reads the key of a file-backed home the way the store does.
#[cfg(test)]
pub(crate) fn read_file_key(path: &Path) -> EncryptionKey {
    let text = fs::read_to_string(path).unwrap();
    EncryptionKey::from_base64(&text, || path.display().to_string()).unwrap()
}

/// Test support: writes `key` as a key file with mode `0600`.
#[cfg(test)]
pub(crate) fn write_file_key(path: &Path, key: &EncryptionKey) {
    crate::home::atomic_write(path, key.to_base64().0.as_bytes(), 0o600).unwrap();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manager(home: &Path) -> KeyManager {
        KeyManager::new(&MoatHome::at(home), KeyConfig::file())
    }

    /// A keychain that never answers in time (a locked keychain, an unanswered prompt).
    struct SilentKeychain;

    impl keyring::credential::CredentialApi for SilentKeychain {
        fn set_secret(&self, _: &[u8]) -> keyring::Result<()> {
            std::thread::sleep(KEYCHAIN_TIMEOUT * 3);
            Ok(())
        }

        fn get_secret(&self) -> keyring::Result<Vec<u8>> {
            std::thread::sleep(KEYCHAIN_TIMEOUT * 3);
            Err(keyring::Error::NoEntry)
        }

        fn delete_credential(&self) -> keyring::Result<()> {
            Ok(())
        }

        fn as_any(&self) -> &dyn std::any::Any {
            self
        }
    }

    impl keyring::credential::CredentialBuilderApi for SilentKeychain {
        fn build(
            &self,
            _: Option<&str>,
            _: &str,
            _: &str,
        ) -> keyring::Result<Box<keyring::credential::Credential>> {
            Ok(Box::new(SilentKeychain))
        }

        fn as_any(&self) -> &dyn std::any::Any {
            self
        }
    }

    #[test]
    fn no_key_is_created_after_the_keychain_timed_out() {
        // Only this test uses the keychain; the others choose the file.
        keyring::set_default_credential_builder(Box::new(SilentKeychain));
        let home = tempfile::tempdir().unwrap();
        let config = |backend| KeyConfig {
            backend,
            service: "moat-test-silent".into(),
        };
        let auto = KeyManager::new(&MoatHome::at(home.path()), config(KeyBackend::Auto));
        let err = auto.get_or_create().expect_err("no key may be created");
        assert!(matches!(err, KeyError::KeychainSilent { .. }), "{err}");
        assert!(
            err.to_string().contains("did not answer within 0.3 s"),
            "{err}"
        );
        assert!(err.hint().unwrap().contains("MOAT_KEYRING_BACKEND=file"));
        assert!(!auto.key_file().exists());

        // Choosing the file is the way out, and the key it creates is then used.
        let file = KeyManager::new(&MoatHome::at(home.path()), config(KeyBackend::File));
        let created = file.get_or_create().unwrap();
        let found = auto.get_or_create().unwrap();
        assert_eq!(created.0, found.0);
    }

    #[test]
    fn config_from_vars() {
        assert_eq!(KeyConfig::from_vars(None, None), KeyConfig::default());
        let c = KeyConfig::from_vars(Some("file"), Some("moat-test"));
        assert_eq!(c.backend, KeyBackend::File);
        assert_eq!(c.service, "moat-test");
        assert_eq!(c.key_file_name(), "moat-test.key");
        assert_eq!(KeyConfig::from_vars(Some("FILE"), Some("")).service, "moat");
        assert_eq!(
            KeyConfig::from_vars(Some("auto"), None).backend,
            KeyBackend::Auto
        );
        assert_eq!(KeyConfig::default().key_file_name(), "encryption.key");
        let odd = KeyConfig::from_vars(None, Some("../a/b"));
        assert_eq!(odd.key_file_name(), "_a_b.key");
    }

    #[test]
    fn debug_hides_the_key() {
        let key = EncryptionKey::generate();
        assert_eq!(format!("{key:?}"), "EncryptionKey([REDACTED])");
    }

    #[test]
    fn get_creates_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let home = tmp.path().join("home");
        assert!(manager(&home).get().unwrap().is_none());
        assert!(!home.exists());
    }

    #[test]
    fn get_or_create_is_stable_and_private() {
        let tmp = tempfile::tempdir().unwrap();
        let m = manager(tmp.path());
        let first = m.get_or_create().unwrap();
        let second = m.get_or_create().unwrap();
        assert!(first.same_as(&second));
        assert!(m.get().unwrap().unwrap().same_as(&first));
        let text = fs::read_to_string(m.key_file()).unwrap();
        assert_eq!(BASE64.decode(text.trim()).unwrap().len(), KEY_LEN);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(m.key_file()).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
    }

    #[test]
    fn trailing_whitespace_is_trimmed() {
        let tmp = tempfile::tempdir().unwrap();
        let m = manager(tmp.path());
        let key = EncryptionKey::generate();
        let text = format!("{}\n \n", key.to_base64().0);
        crate::home::atomic_write(&m.key_file(), text.as_bytes(), 0o600).unwrap();
        assert!(m.get().unwrap().unwrap().same_as(&key));
    }

    #[test]
    fn malformed_key_files_are_clear_errors() {
        let tmp = tempfile::tempdir().unwrap();
        let m = manager(tmp.path());
        let secretish = "not*base64*SECRETBYTES";
        crate::home::atomic_write(&m.key_file(), secretish.as_bytes(), 0o600).unwrap();
        let err = m.get().unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("not valid base64"), "{msg}");
        assert!(msg.contains("encryption.key"), "{msg}");
        assert!(!msg.contains("SECRETBYTES"), "{msg}");
        assert!(err.hint().is_some());

        crate::home::atomic_write(&m.key_file(), BASE64.encode([7u8; 16]).as_bytes(), 0o600)
            .unwrap();
        let msg = m.get_or_create().unwrap_err().to_string();
        assert!(msg.contains("16 bytes instead of 32"), "{msg}");
    }

    #[cfg(unix)]
    #[test]
    fn lock_is_held_during_get_or_create() {
        let tmp = tempfile::tempdir().unwrap();
        let m = manager(tmp.path());
        // Hold the lock ourselves, through a separate open file (as another process would).
        let held = m.lock().unwrap();
        let (tx, rx) = mpsc::channel();
        let m2 = m.clone();
        let worker = std::thread::spawn(move || {
            let key = m2.get_or_create();
            tx.send(()).unwrap();
            key
        });
        assert!(
            rx.recv_timeout(Duration::from_millis(300)).is_err(),
            "get_or_create ran without the lock"
        );
        assert!(!m.key_file().exists());
        drop(held);
        rx.recv_timeout(Duration::from_secs(10)).unwrap();
        let key = worker.join().unwrap().unwrap();
        assert!(m.get().unwrap().unwrap().same_as(&key));
    }
}
