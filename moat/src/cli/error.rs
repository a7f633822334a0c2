//! [`CliError`]: the one report a failed command prints, and the exit code it maps to.

use std::process::ExitCode;

use moat_plugin_sdk::{ErrorKind, ProviderError};

use crate::credential::StoreError;

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

    /// Sets the exit code.
    pub fn code(mut self, code: u8) -> Self {
        self.code = code;
        self
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

impl From<ProviderError> for CliError {
    fn from(err: ProviderError) -> Self {
        let code = match err.kind {
            ErrorKind::ProviderNotFound | ErrorKind::CredentialNotFound => code::NOT_FOUND,
            ErrorKind::InvalidCredential
            | ErrorKind::TokenRevoked
            | ErrorKind::CredentialExpired => code::REJECTED,
            ErrorKind::NeedsInput => code::NEEDS_INPUT,
            _ => code::FAILURE,
        };
        CliError {
            message: err.message,
            hint: err.hint,
            code,
        }
    }
}

impl From<StoreError> for CliError {
    fn from(err: StoreError) -> Self {
        let code = if err.is_not_found() {
            code::NOT_FOUND
        } else {
            code::STORE
        };
        CliError {
            hint: err.hint(),
            message: err.to_string(),
            code,
        }
    }
}

/// Result of a command.
pub type CliResult = Result<(), CliError>;
