//! [`CliError`]: the one report a failed command prints, and the exit code it maps to.

use std::process::ExitCode;

use moat_plugin_sdk::{ErrorKind, ProviderError};

use crate::config::ConfigError;
use crate::credential::StoreError;
use crate::http::EXTRA_CA_ENV;
use crate::provider::{GrantProblem, GrantsError};
use crate::proxy::{CaError, RESOLVE_ENV, RunError, UpstreamError};
use crate::run::RunStoreError;
use crate::run::manager::RunFailure;
use crate::run::proxy_host::ProxyStartError;
use crate::runtime::RuntimeError;

/// Exit codes, so scripts can tell failures apart. Listed in `moat --help`.
pub mod code {
    /// Something failed; the message says what.
    pub const FAILURE: u8 = 1;
    /// The command line was wrong (clap's own code).
    pub const USAGE: u8 = 2;
    /// No such provider, or nothing stored for it.
    pub const NOT_FOUND: u8 = 3;
    /// The credential was rejected (invalid, revoked, expired).
    pub const REJECTED: u8 = 4;
    /// An answer was needed and no one could give it (`--no-input`, no terminal).
    pub const NEEDS_INPUT: u8 = 5;
    /// The credential store cannot be read (changed key, corrupted file, unsafe key file).
    pub const STORE: u8 = 6;
    /// Interrupted by Ctrl-C (128 + SIGINT, as shells report it).
    pub const INTERRUPTED: u8 = 130;
}

/// What failed, what to do about it, and the exit code.
#[derive(Debug)]
pub struct CliError {
    message: String,
    hint: Option<String>,
    code: u8,
}

impl CliError {
    /// A failure with the generic exit code.
    pub fn new(message: impl Into<String>) -> Self {
        CliError {
            message: message.into(),
            hint: None,
            code: code::FAILURE,
        }
    }

    /// Sets the hint.
    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// Adds a paragraph after the hint (or makes it the hint).
    pub fn append_hint(mut self, more: impl AsRef<str>) -> Self {
        self.hint = Some(match self.hint.take() {
            Some(hint) => format!("{hint}\n\n{}", more.as_ref()),
            None => more.as_ref().to_string(),
        });
        self
    }

    /// Sets the exit code.
    pub fn code(mut self, code: u8) -> Self {
        self.code = code;
        self
    }

    /// The exit code it maps to.
    pub fn exit_code(&self) -> u8 {
        self.code
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The hint, when there is one.
    pub fn hint_text(&self) -> Option<&str> {
        self.hint.as_deref()
    }

    /// Prints the report on stderr and returns the exit code.
    pub fn report(&self) -> ExitCode {
        let red = anstyle::Style::new()
            .bold()
            .fg_color(Some(anstyle::AnsiColor::Red.into()));
        anstream::eprintln!("{red}error:{red:#} {}", self.message);
        if let Some(hint) = &self.hint {
            anstream::eprintln!("\n{hint}");
        }
        ExitCode::from(self.code)
    }
}

/// The exit code for a provider error kind.
fn code_of(kind: ErrorKind) -> u8 {
    match kind {
        ErrorKind::ProviderNotFound | ErrorKind::CredentialNotFound => code::NOT_FOUND,
        ErrorKind::InvalidCredential | ErrorKind::TokenRevoked | ErrorKind::CredentialExpired => {
            code::REJECTED
        }
        ErrorKind::NeedsInput => code::NEEDS_INPUT,
        _ => code::FAILURE,
    }
}

impl From<ProviderError> for CliError {
    fn from(err: ProviderError) -> Self {
        CliError {
            code: code_of(err.kind),
            message: err.message,
            hint: err.hint,
        }
    }
}

/// Every problem listed, every fix command in the hint. The exit code is the problems' common
/// one (3 when every grant is unknown or missing, 6 when the store cannot be read), else 1.
impl From<GrantsError> for CliError {
    fn from(err: GrantsError) -> Self {
        let mut codes = err.problems.iter().map(|problem| match problem {
            GrantProblem::Unreadable { error, .. } => CliError::from_store_code(error),
            other => code_of(other.kind()),
        });
        let first = codes.next().unwrap_or(code::FAILURE);
        let code = if codes.all(|c| c == first) {
            first
        } else {
            code::FAILURE
        };
        CliError {
            hint: err.hint(),
            message: err.to_string(),
            code,
        }
    }
}

impl From<CaError> for CliError {
    fn from(err: CaError) -> Self {
        CliError {
            hint: err.hint(),
            message: err.to_string(),
            code: code::FAILURE,
        }
    }
}

/// A bad `MOAT_PROXY_RESOLVE` is a usage error; the rest are failures.
impl From<UpstreamError> for CliError {
    fn from(err: UpstreamError) -> Self {
        let (code, hint) = match &err {
            UpstreamError::Resolve { .. } => (
                code::USAGE,
                Some(format!(
                    "{RESOLVE_ENV} maps host:port to another address, like curl's --resolve: \
                     {RESOLVE_ENV}='api.github.com:443:127.0.0.1:8443,...'"
                )),
            ),
            UpstreamError::ExtraCaRead { .. } | UpstreamError::ExtraCaParse { .. } => (
                code::FAILURE,
                Some(format!(
                    "{EXTRA_CA_ENV} must name a readable PEM file of CA certificates."
                )),
            ),
            _ => (code::FAILURE, None),
        };
        CliError {
            message: err.to_string(),
            hint,
            code,
        }
    }
}

/// A bad network policy is a usage error (it comes from flags or moat.yaml).
impl From<RunError> for CliError {
    fn from(err: RunError) -> Self {
        let code = match err {
            RunError::Policy(_) => code::USAGE,
            _ => code::FAILURE,
        };
        CliError {
            message: err.to_string(),
            hint: None,
            code,
        }
    }
}

impl CliError {
    fn from_store_code(err: &StoreError) -> u8 {
        if err.is_not_found() {
            code::NOT_FOUND
        } else {
            code::STORE
        }
    }
}

impl From<StoreError> for CliError {
    fn from(err: StoreError) -> Self {
        CliError {
            code: CliError::from_store_code(&err),
            hint: err.hint(),
            message: err.to_string(),
        }
    }
}

/// Result of a command.
pub type CliResult = Result<(), CliError>;

impl From<RunStoreError> for CliError {
    fn from(err: RunStoreError) -> Self {
        super::runs::store_error(err)
    }
}

impl From<RuntimeError> for CliError {
    fn from(err: RuntimeError) -> Self {
        CliError {
            hint: err.hint(),
            message: err.to_string(),
            code: code::FAILURE,
        }
    }
}

/// A run that failed before or around its command: each cause keeps its own code and hint.
impl From<RunFailure> for CliError {
    fn from(err: RunFailure) -> Self {
        match err {
            RunFailure::Grants(err) => err.into(),
            RunFailure::Runtime(err) => err.into(),
            RunFailure::Store(err) => err.into(),
            RunFailure::Ca(err) => err.into(),
            RunFailure::Proxy(ProxyStartError::Upstream(err)) => err.into(),
            RunFailure::Register(err) => err.into(),
            RunFailure::Provider { grant, error } => {
                let mut cli = CliError::from(error);
                cli.message = format!("{grant}: {}", cli.message);
                cli
            }
            // 128 + SIGINT, as after a Ctrl-C while the command runs.
            RunFailure::Interrupted => CliError::new(err.to_string()).code(code::INTERRUPTED),
            RunFailure::Workspace { .. } => {
                let hint = err.hint();
                let cli = CliError::new(err.to_string()).code(code::USAGE);
                match hint {
                    Some(hint) => cli.hint(hint),
                    None => cli,
                }
            }
            other => {
                let hint = other.hint();
                let cli = CliError::new(other.to_string());
                match hint {
                    Some(hint) => cli.hint(hint),
                    None => cli,
                }
            }
        }
    }
}

/// A `moat.yaml` that is not valid is a usage error (the message names the file, line, column
/// and key); one that cannot be read is a failure.
impl From<ConfigError> for CliError {
    fn from(err: ConfigError) -> Self {
        let code = match err {
            ConfigError::Invalid(_) => code::USAGE,
            ConfigError::Read { .. } => code::FAILURE,
        };
        CliError::new(err.to_string()).code(code)
    }
}
