//! A throwaway certificate authority for the tests' HTTPS servers.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, SanType,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// The file name [`TestCa::write_pem`] writes into the directory it is given.
pub const CA_PEM_FILE: &str = "test-ca.pem";

/// The crypto provider every TLS configuration of this crate uses: ring, passed explicitly so
/// nothing depends on which provider happens to be the process default.
pub fn crypto_provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A fresh certificate authority, generated in memory for one test (or one [`crate::MoatEnv`]).
///
/// Nothing trusts it except what a test points at it explicitly: moat through
/// `MOAT_EXTRA_CA_CERTS` (see [`TestCa::write_pem`]), in-process clients through
/// [`TestCa::root_store`] or [`TestCa::client_config`].
pub struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl std::fmt::Debug for TestCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCa").finish_non_exhaustive()
    }
}

impl Default for TestCa {
    fn default() -> Self {
        Self::new()
    }
}

impl TestCa {
    /// Generates a new CA (ECDSA P-256 key, `CN=moat test CA`, unconstrained basic constraints,
    /// allowed to sign certificates).
    pub fn new() -> Self {
        let mut params = CertificateParams::default();
        let mut name = DistinguishedName::new();
        name.push(DnType::CommonName, "moat test CA");
        name.push(DnType::OrganizationName, "moat-tests");
        params.distinguished_name = name;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().expect("generate the test CA key");
        let issuer =
            CertifiedIssuer::self_signed(params, key).expect("self-sign the test CA certificate");
        Self { issuer }
    }

    /// The CA certificate, PEM encoded.
    pub fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// The CA certificate, DER encoded.
    pub fn cert_der(&self) -> CertificateDer<'static> {
        self.issuer.der().clone()
    }

    /// Writes the CA certificate as PEM to `dir/`[`CA_PEM_FILE`] (creating `dir` if needed) and
    /// returns the file's path: what `MOAT_EXTRA_CA_CERTS` should name.
    pub fn write_pem(&self, dir: impl AsRef<Path>) -> PathBuf {
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir)
            .unwrap_or_else(|err| panic!("cannot create {}: {err}", dir.display()));
        let path = dir.join(CA_PEM_FILE);
        std::fs::write(&path, self.pem())
            .unwrap_or_else(|err| panic!("cannot write {}: {err}", path.display()));
        path
    }

    /// Issues a server certificate for `sans`, signed by this CA.
    ///
    /// Each name that parses as an IP address becomes an IP address SAN (`SanType::IpAddress`,
    /// which is what TLS clients check for `https://127.0.0.1/`), anything else a DNS name SAN.
    /// The first name is also the subject's common name.
    ///
    /// # Panics
    ///
    /// If `sans` is empty or a DNS name is not ASCII.
    pub fn issue(&self, sans: &[&str]) -> IssuedCert {
        assert!(
            !sans.is_empty(),
            "TestCa::issue needs at least one subject alternative name"
        );
        let mut params = CertificateParams::default();
        params.subject_alt_names = sans
            .iter()
            .map(|name| match name.parse::<IpAddr>() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => SanType::DnsName(
                    (*name)
                        .try_into()
                        .unwrap_or_else(|err| panic!("invalid DNS name {name:?}: {err}")),
                ),
            })
            .collect();
        let mut name = DistinguishedName::new();
        name.push(DnType::CommonName, sans[0]);
        params.distinguished_name = name;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;

        let key = KeyPair::generate().expect("generate a leaf key");
        let cert = params
            .signed_by(&key, &self.issuer)
            .expect("sign the leaf certificate");
        IssuedCert {
            cert_der: cert.der().clone(),
            cert_pem: cert.pem(),
            key_der: key.serialize_der(),
            key_pem: key.serialize_pem(),
        }
    }

    /// A root store holding only this CA.
    pub fn root_store(&self) -> rustls::RootCertStore {
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(self.cert_der())
            .expect("the test CA is a valid trust anchor");
        roots
    }

    /// A rustls client configuration (ring provider, default protocol versions) that trusts this
    /// CA and nothing else. Offers no ALPN protocol, so servers fall back to HTTP/1.1.
    pub fn client_config(&self) -> rustls::ClientConfig {
        rustls::ClientConfig::builder_with_provider(crypto_provider())
            .with_safe_default_protocol_versions()
            .expect("ring supports the default protocol versions")
            .with_root_certificates(self.root_store())
            .with_no_client_auth()
    }
}

/// A leaf certificate and its private key, issued by [`TestCa::issue`].
#[derive(Debug, Clone)]
pub struct IssuedCert {
    cert_der: CertificateDer<'static>,
    cert_pem: String,
    key_der: Vec<u8>,
    key_pem: String,
}

impl IssuedCert {
    /// The certificate, DER encoded.
    pub fn cert_der(&self) -> CertificateDer<'static> {
        self.cert_der.clone()
    }

    /// The certificate, PEM encoded.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The private key (PKCS#8), DER encoded.
    pub fn key_der(&self) -> PrivateKeyDer<'static> {
        PrivatePkcs8KeyDer::from(self.key_der.clone()).into()
    }

    /// The private key (PKCS#8), PEM encoded.
    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }

    /// A rustls server configuration (ring provider, default protocol versions, no client auth)
    /// presenting this certificate, advertising only `http/1.1` through ALPN.
    pub fn server_config(&self) -> Arc<rustls::ServerConfig> {
        let mut config = rustls::ServerConfig::builder_with_provider(crypto_provider())
            .with_safe_default_protocol_versions()
            .expect("ring supports the default protocol versions")
            .with_no_client_auth()
            .with_single_cert(vec![self.cert_der()], self.key_der())
            .expect("rustls accepts the issued certificate and key");
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Arc::new(config)
    }
}
