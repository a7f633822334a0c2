//! moat's outbound HTTPS client (token validation, OAuth, STS).
//!
//! Trust comes from the platform's roots plus, optionally, the PEM file named by
//! [`EXTRA_CA_ENV`]: a corporate CA, or the test CA of a local server standing in for GitHub. This
//! is the one documented way to trust another CA; no host is special-cased.

use std::path::Path;
use std::time::Duration;

/// Names a PEM file of extra CA certificates trusted by moat's outbound HTTPS connections.
pub const EXTRA_CA_ENV: &str = "MOAT_EXTRA_CA_CERTS";

/// What can go wrong building the client.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The extra CA file could not be read.
    #[error("cannot read {EXTRA_CA_ENV} file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The extra CA file is not PEM certificates.
    #[error("{EXTRA_CA_ENV} file {path} holds no usable PEM certificate: {source}")]
    Parse {
        /// The file.
        path: String,
        /// Why.
        source: reqwest::Error,
    },
    /// The TLS backend refused the configuration.
    #[error("cannot set up HTTPS: {0}")]
    Build(reqwest::Error),
}

/// A client with moat's trust roots and user agent, and `timeout` on every request.
pub fn client(timeout: Duration) -> Result<reqwest::Client, ClientError> {
    let mut builder = reqwest::Client::builder()
        .user_agent(concat!("moat/", env!("CARGO_PKG_VERSION")))
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(10)));
    if let Some(path) = std::env::var_os(EXTRA_CA_ENV).filter(|p| !p.is_empty()) {
        for certificate in read_pem_bundle(Path::new(&path))? {
            builder = builder.add_root_certificate(certificate);
        }
    }
    builder.build().map_err(ClientError::Build)
}

fn read_pem_bundle(path: &Path) -> Result<Vec<reqwest::Certificate>, ClientError> {
    let shown = path.display().to_string();
    let pem = std::fs::read(path).map_err(|source| ClientError::Read {
        path: shown.clone(),
        source,
    })?;
    reqwest::Certificate::from_pem_bundle(&pem).map_err(|source| ClientError::Parse {
        path: shown,
        source,
    })
}

/// `err: source: source...`, deduplicating repeats (hyper wraps errors whose text repeats their
/// source's).
pub(crate) fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}
