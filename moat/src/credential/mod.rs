//! The encrypted credential store.
//!
//! - `store`: [`CredentialStore`], one AES-256-GCM encrypted file per store key
//!   (`$MOAT_HOME/credentials/<key>.enc`), with a versioned header and the store key as
//!   associated data so a file cannot be swapped for another provider's.
//! - `key`: the encryption key, in the OS keychain or a `0600` key file, created under a lock so
//!   concurrent processes agree on one key.
//!
//! ```no_run
//! use moat::credential::{CredentialStore, KeyConfig};
//! use moat::home::MoatHome;
//! use moat_plugin_sdk::Credential;
//!
//! let home = MoatHome::from_env()?;
//! let store = CredentialStore::open(&home, None, KeyConfig::from_env());
//! store.save("github", &Credential::new("github", "ghp_..."))?;
//! let cred = store.load("github")?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub(crate) mod key;
pub(crate) mod store;

pub use key::{KeyBackend, KeyConfig, KeyError};
pub use store::{CredentialStore, StoreError, StoredEntry, with_profile};
