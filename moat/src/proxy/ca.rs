//! The proxy's certificate authority and the leaf certificates it mints per host.
//!
//! Layout under `$MOAT_HOME/proxy/ca/` (the folder is `0700`):
//!
//! - `ca.key`: the CA's private key (PKCS#8 PEM, `0600`); never leaves this folder;
//! - `ca.crt`: the CA certificate (PEM, `0644`);
//! - `public/ca.crt`: the same certificate alone in a folder (`0755`) that can be mounted
//!   read-only into containers without exposing the key.
//!
//! The CA is created once (ECDSA P-256, ten years) and reused. It is written into a temporary
//! sibling folder and renamed into place in one step, so two moat processes starting at once end
//! up sharing one complete CA, never a key of one with the certificate of the other.
//!
//! Every host gets its own leaf: a fresh P-256 key, a random serial, `CN` = the host, one SAN of the
//! right type (an IP address SAN for IP literals, a DNS SAN otherwise), `serverAuth`, valid from one
//! minute ago for [`LEAF_VALIDITY`]. Leaves are kept in a bounded cache ([`LEAF_CACHE_CAPACITY`]
//! entries, least recently used evicted) and re-minted after [`LEAF_CACHE_TTL`], well before they
//! expire. The TLS configuration built around a leaf offers ALPN `h2` and `http/1.1`.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256,
    SanType, SerialNumber,
};
use ring::rand::SecureRandom as _;
use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::home::{MoatHome, atomic_write, ensure_private_dir};

/// How long a minted leaf certificate is valid.
pub const LEAF_VALIDITY: Duration = Duration::from_secs(7 * 24 * 3600);
/// How long a minted leaf is reused before a new one is minted (well under [`LEAF_VALIDITY`]).
pub const LEAF_CACHE_TTL: Duration = Duration::from_secs(24 * 3600);
/// How many hosts' leaves are cached at most.
pub const LEAF_CACHE_CAPACITY: usize = 1024;
/// How long the CA certificate is valid.
const CA_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

const KEY_FILE: &str = "ca.key";
const CERT_FILE: &str = "ca.crt";
const PUBLIC_DIR: &str = "public";

/// The crypto provider of every TLS configuration of the proxy: ring, passed explicitly so nothing
/// depends on which provider happens to be the process default.
pub fn crypto_provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// What can go wrong loading, creating or using the CA.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    /// A file or folder could not be read or written.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file or folder.
        path: PathBuf,
        /// Why it failed.
        source: io::Error,
    },
    /// The CA folder exists but is missing a file or holds something unusable.
    #[error("the proxy CA in {dir} is unusable: {reason}")]
    Unusable {
        /// The CA folder.
        dir: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The key file can be read by other users.
    #[error("the proxy CA key {0} is readable by other users")]
    KeyPermissions(PathBuf),
    /// Generating or signing a certificate failed.
    #[error("cannot create a certificate for {subject}: {source}")]
    Certificate {
        /// The host (or `moat CA`).
        subject: String,
        /// Why.
        source: rcgen::Error,
    },
    /// Not a host name or IP address.
    #[error("cannot issue a certificate for {0:?}: not a host name or IP address")]
    InvalidHost(String),
    /// rustls refused the certificate or the protocol configuration.
    #[error("cannot build the TLS configuration for {host}: {source}")]
    Tls {
        /// The host.
        host: String,
        /// Why.
        source: rustls::Error,
    },
}

impl CaError {
    /// What the user can do about it.
    pub fn hint(&self) -> Option<String> {
        match self {
            CaError::Unusable { dir, .. } => Some(format!(
                "Remove {} to have moat create a new CA (containers must then trust the new one).",
                dir.display()
            )),
            CaError::KeyPermissions(path) => Some(format!("Run: chmod 600 {}", path.display())),
            _ => None,
        }
    }
}

/// The proxy's CA: signs one leaf certificate per host and caches the TLS configurations.
pub struct CertificateAuthority {
    issuer: Issuer<'static, KeyPair>,
    ca_der: CertificateDer<'static>,
    ca_pem: String,
    dir: PathBuf,
    provider: Arc<CryptoProvider>,
    leaves: Mutex<LeafCache>,
}

impl std::fmt::Debug for CertificateAuthority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertificateAuthority")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl CertificateAuthority {
    /// The CA of `home` (`<home>/proxy/ca/`), created on first use.
    pub fn load_or_create(home: &MoatHome) -> Result<CertificateAuthority, CaError> {
        Self::load_or_create_in(&home.root().join("proxy").join("ca"))
    }

    /// The CA in `dir`, created there (with its parent) if `dir` does not exist.
    pub fn load_or_create_in(dir: &Path) -> Result<CertificateAuthority, CaError> {
        if !dir.exists() {
            create(dir)?;
        }
        load(dir)
    }

    /// The folder holding the CA.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The certificate alone in its own folder (`public/ca.crt`): what containers trust.
    pub fn cert_path(&self) -> PathBuf {
        self.public_dir().join(CERT_FILE)
    }

    /// The folder holding only the certificate, to mount read-only into containers.
    pub fn public_dir(&self) -> PathBuf {
        self.dir.join(PUBLIC_DIR)
    }

    /// The CA certificate, PEM encoded.
    pub fn cert_pem(&self) -> &str {
        &self.ca_pem
    }

    /// The CA certificate, DER encoded.
    pub fn cert_der(&self) -> &CertificateDer<'static> {
        &self.ca_der
    }

    /// The TLS server configuration presenting a leaf for `host` (a DNS name or an IP literal,
    /// without brackets), from the cache or freshly minted.
    pub fn server_config(&self, host: &str) -> Result<Arc<ServerConfig>, CaError> {
        let key = host.to_ascii_lowercase();
        let valid_name = !key.is_empty()
            && key.len() <= 253
            && key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'));
        if !valid_name && key.parse::<IpAddr>().is_err() {
            return Err(CaError::InvalidHost(host.chars().take(256).collect()));
        }
        let now = Instant::now();
        if let Some(config) = self.cache().get(&key, now) {
            return Ok(config);
        }
        // Minted outside the lock: two connections racing for a new host both mint, the later
        // insert wins, and both leaves are valid.
        let config = self.mint(&key)?;
        self.cache().insert(key, Arc::clone(&config), now);
        Ok(config)
    }

    /// How many leaves are cached.
    pub fn cached_leaves(&self) -> usize {
        self.cache().entries.len()
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, LeafCache> {
        self.leaves
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Mints a leaf for `host` and wraps it in a server configuration.
    fn mint(&self, host: &str) -> Result<Arc<ServerConfig>, CaError> {
        let cert_err = |source| CaError::Certificate {
            subject: host.to_owned(),
            source,
        };
        let mut params = CertificateParams::default();
        params.subject_alt_names = vec![match host.parse::<IpAddr>() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => SanType::DnsName(host.to_owned().try_into().map_err(cert_err)?),
        }];
        let mut name = DistinguishedName::new();
        name.push(DnType::CommonName, host);
        name.push(DnType::OrganizationName, "moat proxy");
        params.distinguished_name = name;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        params.serial_number = Some(random_serial());
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::minutes(1);
        params.not_after = now + LEAF_VALIDITY;

        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(cert_err)?;
        let cert = params.signed_by(&key, &self.issuer).map_err(cert_err)?;
        let chain = vec![cert.der().clone(), self.ca_der.clone()];
        let key_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let tls_err = |source| CaError::Tls {
            host: host.to_owned(),
            source,
        };
        let mut config = ServerConfig::builder_with_provider(Arc::clone(&self.provider))
            .with_safe_default_protocol_versions()
            .map_err(tls_err)?
            .with_no_client_auth()
            .with_single_cert(chain, key_der)
            .map_err(tls_err)?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

/// A bounded map of host → configuration with a time to live; the least recently used entry goes
/// first when full.
struct LeafCache {
    entries: HashMap<String, CachedLeaf>,
    capacity: usize,
    ttl: Duration,
}

struct CachedLeaf {
    config: Arc<ServerConfig>,
    minted: Instant,
    used: Instant,
}

impl LeafCache {
    fn new(capacity: usize, ttl: Duration) -> Self {
        LeafCache {
            entries: HashMap::new(),
            capacity: capacity.max(1),
            ttl,
        }
    }

    fn get(&mut self, host: &str, now: Instant) -> Option<Arc<ServerConfig>> {
        let entry = self.entries.get_mut(host)?;
        if now.duration_since(entry.minted) >= self.ttl {
            self.entries.remove(host);
            return None;
        }
        entry.used = now;
        Some(Arc::clone(&entry.config))
    }

    fn insert(&mut self, host: String, config: Arc<ServerConfig>, now: Instant) {
        if !self.entries.contains_key(&host) && self.entries.len() >= self.capacity {
            // O(capacity), only when a new host arrives with the cache full.
            if let Some(oldest) = self
                .entries
                .iter()
                .min_by_key(|(_, leaf)| leaf.used)
                .map(|(host, _)| host.clone())
            {
                self.entries.remove(&oldest);
            }
        }
        self.entries.insert(
            host,
            CachedLeaf {
                config,
                minted: now,
                used: now,
            },
        );
    }
}

fn random_serial() -> SerialNumber {
    let mut bytes = [0u8; 16];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .expect("the system random number generator works");
    // Positive and without a leading zero byte, as DER INTEGER serials should be.
    bytes[0] = (bytes[0] & 0x7f) | 0x40;
    SerialNumber::from_slice(&bytes)
}

fn io_err(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> CaError {
    let path = path.to_path_buf();
    move |source| CaError::Io {
        action,
        path,
        source,
    }
}

/// Generates a CA into a temporary sibling of `dir`, then renames it to `dir`. Losing the race
/// to another process is fine: its CA is used.
fn create(dir: &Path) -> Result<(), CaError> {
    let parent = dir.parent().unwrap_or(Path::new("."));
    ensure_private_dir(parent).map_err(io_err("cannot create", parent))?;

    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, "moat proxy CA");
    name.push(DnType::OrganizationName, "moat");
    params.distinguished_name = name;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.serial_number = Some(random_serial());
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + CA_VALIDITY;
    let cert_err = |source| CaError::Certificate {
        subject: "moat proxy CA".into(),
        source,
    };
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(cert_err)?;
    let key_pem = key.serialize_pem();
    let issuer = CertifiedIssuer::self_signed(params, key).map_err(cert_err)?;
    let cert_pem = issuer.pem();

    let file_name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "ca".into());
    let staging = parent.join(format!(".{file_name}.tmp-{}", std::process::id()));
    let _ = fs::remove_dir_all(&staging);
    let result = (|| {
        ensure_private_dir(&staging).map_err(io_err("cannot create", &staging))?;
        let public = staging.join(PUBLIC_DIR);
        fs::create_dir(&public).map_err(io_err("cannot create", &public))?;
        set_mode(&public, 0o755).map_err(io_err("cannot set permissions of", &public))?;
        let key_path = staging.join(KEY_FILE);
        atomic_write(&key_path, key_pem.as_bytes(), 0o600)
            .map_err(io_err("cannot write", &key_path))?;
        let cert_path = staging.join(CERT_FILE);
        atomic_write(&cert_path, cert_pem.as_bytes(), 0o644)
            .map_err(io_err("cannot write", &cert_path))?;
        let public_cert = public.join(CERT_FILE);
        atomic_write(&public_cert, cert_pem.as_bytes(), 0o644)
            .map_err(io_err("cannot write", &public_cert))?;
        match fs::rename(&staging, dir) {
            Ok(()) => {
                tracing::info!(dir = %dir.display(), "created the proxy CA");
                Ok(())
            }
            // Another process got there first (the target exists and is not empty).
            Err(_) if dir.join(KEY_FILE).exists() => Ok(()),
            Err(err) => Err(io_err("cannot create", dir)(err)),
        }
    })();
    let _ = fs::remove_dir_all(&staging);
    result
}

fn load(dir: &Path) -> Result<CertificateAuthority, CaError> {
    let unusable = |reason: String| CaError::Unusable {
        dir: dir.to_path_buf(),
        reason,
    };
    let key_path = dir.join(KEY_FILE);
    let cert_path = dir.join(CERT_FILE);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let meta = fs::metadata(&key_path).map_err(io_err("cannot read", &key_path))?;
        if meta.permissions().mode() & 0o077 != 0 {
            return Err(CaError::KeyPermissions(key_path));
        }
    }
    let key_pem = fs::read_to_string(&key_path).map_err(io_err("cannot read", &key_path))?;
    let cert_pem = fs::read_to_string(&cert_path).map_err(io_err("cannot read", &cert_path))?;
    let key = KeyPair::from_pem(&key_pem)
        .map_err(|err| unusable(format!("{KEY_FILE} is not a usable private key ({err})")))?;
    let ca_der = CertificateDer::from_pem_slice(cert_pem.as_bytes())
        .map_err(|err| unusable(format!("{CERT_FILE} is not a PEM certificate ({err})")))?;
    let issuer = Issuer::from_ca_cert_der(&ca_der, key)
        .map_err(|err| unusable(format!("{CERT_FILE} cannot be used to sign ({err})")))?;

    // The public copy is derived data: restore it if it went missing or changed.
    let public = dir.join(PUBLIC_DIR);
    let public_cert = public.join(CERT_FILE);
    if fs::read_to_string(&public_cert).ok().as_deref() != Some(cert_pem.as_str()) {
        fs::create_dir_all(&public).map_err(io_err("cannot create", &public))?;
        set_mode(&public, 0o755).map_err(io_err("cannot set permissions of", &public))?;
        atomic_write(&public_cert, cert_pem.as_bytes(), 0o644)
            .map_err(io_err("cannot write", &public_cert))?;
    }

    Ok(CertificateAuthority {
        issuer,
        ca_der,
        ca_pem: cert_pem,
        dir: dir.to_path_buf(),
        provider: crypto_provider(),
        leaves: Mutex::new(LeafCache::new(LEAF_CACHE_CAPACITY, LEAF_CACHE_TTL)),
    })
}

fn set_mode(path: &Path, mode: u32) -> io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        fs::set_permissions(path, fs::Permissions::from_mode(mode))
    }
    #[cfg(not(unix))]
    {
        let _ = (path, mode);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    use crate::home::mode_of;

    /// A TLS handshake in memory: a client trusting only `ca` connects to `name`, the server
    /// presents `config`.
    async fn handshake(ca: &CertificateAuthority, config: Arc<ServerConfig>, name: &str) -> bool {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca.cert_der().clone()).unwrap();
        let client = rustls::ClientConfig::builder_with_provider(crypto_provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        let (a, b) = tokio::io::duplex(64 * 1024);
        let name = rustls::pki_types::ServerName::try_from(name.to_owned()).unwrap();
        let (client, server) = tokio::join!(connector.connect(name, a), acceptor.accept(b));
        client.is_ok() && server.is_ok()
    }

    #[test]
    fn creates_once_with_private_key_and_public_certificate() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("proxy/ca");
        let ca = CertificateAuthority::load_or_create_in(&dir).unwrap();
        assert!(ca.cert_pem().starts_with("-----BEGIN CERTIFICATE-----"));
        assert_eq!(ca.cert_path(), dir.join("public/ca.crt"));
        assert_eq!(fs::read_to_string(ca.cert_path()).unwrap(), ca.cert_pem());
        let names: Vec<String> = fs::read_dir(ca.public_dir())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            ["ca.crt"],
            "the public folder holds only the certificate"
        );
        #[cfg(unix)]
        {
            assert_eq!(mode_of(&dir), 0o700);
            assert_eq!(mode_of(&dir.join("ca.key")), 0o600);
            assert_eq!(mode_of(&dir.join("ca.crt")), 0o644);
            assert_eq!(mode_of(&ca.public_dir()), 0o755);
            assert_eq!(mode_of(&ca.cert_path()), 0o644);
        }
        // Loaded again: the same CA.
        let again = CertificateAuthority::load_or_create_in(&dir).unwrap();
        assert_eq!(again.cert_pem(), ca.cert_pem());
        // No staging folder left behind.
        let siblings: Vec<_> = fs::read_dir(dir.parent().unwrap()).unwrap().collect();
        assert_eq!(siblings.len(), 1);
    }

    #[test]
    fn a_missing_public_copy_is_restored() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("ca");
        let ca = CertificateAuthority::load_or_create_in(&dir).unwrap();
        fs::remove_dir_all(ca.public_dir()).unwrap();
        let again = CertificateAuthority::load_or_create_in(&dir).unwrap();
        assert_eq!(
            fs::read_to_string(again.cert_path()).unwrap(),
            ca.cert_pem()
        );
    }

    #[cfg(unix)]
    #[test]
    fn a_key_readable_by_others_is_refused() {
        use std::os::unix::fs::PermissionsExt as _;
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("ca");
        CertificateAuthority::load_or_create_in(&dir).unwrap();
        fs::set_permissions(dir.join("ca.key"), fs::Permissions::from_mode(0o644)).unwrap();
        let err = CertificateAuthority::load_or_create_in(&dir).unwrap_err();
        assert!(matches!(err, CaError::KeyPermissions(_)), "{err}");
        assert!(err.hint().unwrap().contains("chmod 600"));
    }

    #[test]
    fn a_broken_key_is_reported_without_its_content() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("ca");
        CertificateAuthority::load_or_create_in(&dir).unwrap();
        atomic_write(&dir.join("ca.key"), b"not a key SECRETBYTES", 0o600).unwrap();
        let err = CertificateAuthority::load_or_create_in(&dir).unwrap_err();
        let text = format!("{err} {err:?}");
        assert!(text.contains("ca.key"), "{text}");
        assert!(!text.contains("SECRETBYTES"), "{text}");
        assert!(err.hint().unwrap().contains("Remove"));
    }

    #[tokio::test]
    async fn leaves_verify_for_their_host_only() {
        let tmp = tempfile::tempdir().unwrap();
        let ca = CertificateAuthority::load_or_create_in(&tmp.path().join("ca")).unwrap();
        let api = ca.server_config("api.example.com").unwrap();
        assert!(handshake(&ca, Arc::clone(&api), "api.example.com").await);
        assert!(!handshake(&ca, api, "other.example.com").await);
        let ip = ca.server_config("127.0.0.1").unwrap();
        assert!(handshake(&ca, Arc::clone(&ip), "127.0.0.1").await, "IP SAN");
        assert!(!handshake(&ca, ip, "localhost").await);
        let v6 = ca.server_config("::1").unwrap();
        assert!(handshake(&ca, v6, "::1").await);
        // Another CA's leaf is not trusted.
        let other_tmp = tempfile::tempdir().unwrap();
        let other = CertificateAuthority::load_or_create_in(&other_tmp.path().join("ca")).unwrap();
        let foreign = other.server_config("api.example.com").unwrap();
        assert!(!handshake(&ca, foreign, "api.example.com").await);
    }

    #[test]
    fn leaves_are_cached_per_host_and_bounded() {
        let tmp = tempfile::tempdir().unwrap();
        let ca = CertificateAuthority::load_or_create_in(&tmp.path().join("ca")).unwrap();
        let a = ca.server_config("API.example.com").unwrap();
        let b = ca.server_config("api.example.com").unwrap();
        assert!(Arc::ptr_eq(&a, &b), "case-insensitive cache hit");
        assert_eq!(a.alpn_protocols, vec![b"h2".to_vec(), b"http/1.1".to_vec()]);
        let ip = ca.server_config("127.0.0.1").unwrap();
        assert!(!Arc::ptr_eq(&a, &ip));
        assert!(ca.server_config("::1").is_ok());
        assert_eq!(ca.cached_leaves(), 3);

        let mut cache = LeafCache::new(2, Duration::from_secs(60));
        let t0 = Instant::now();
        cache.insert("a".into(), Arc::clone(&a), t0);
        cache.insert("b".into(), Arc::clone(&a), t0 + Duration::from_secs(1));
        assert!(cache.get("a", t0 + Duration::from_secs(2)).is_some());
        cache.insert("c".into(), Arc::clone(&a), t0 + Duration::from_secs(3));
        assert!(
            cache.get("b", t0 + Duration::from_secs(3)).is_none(),
            "LRU evicted"
        );
        assert!(cache.get("a", t0 + Duration::from_secs(3)).is_some());
        assert!(
            cache.get("a", t0 + Duration::from_secs(61)).is_none(),
            "expired"
        );
    }

    #[test]
    fn invalid_host_names_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let ca = CertificateAuthority::load_or_create_in(&tmp.path().join("ca")).unwrap();
        assert!(ca.server_config("bad host").is_err());
    }
}
