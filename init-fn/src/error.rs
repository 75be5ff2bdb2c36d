//! The function's failures: one named variant per `errorType` of the contract. Messages are one line
//! and never carry the password.

use lambda_runtime::Diagnostic;

#[derive(Debug, Clone, thiserror::Error)]
pub enum InitError {
    #[error("{0}")]
    Config(String),
    #[error("{0}")]
    InvalidEvent(String),
    #[error("{0}")]
    SecretFetch(String),
    #[error("{0}")]
    SecretFormat(String),
    #[error("{0}")]
    Connect(String),
    #[error("{0}")]
    Tls(String),
    #[error("{0}")]
    Auth(String),
    #[error("{0}")]
    LockTimeout(String),
    #[error("{0}")]
    ChecksumMismatch(String),
    #[error("migration {version} ({name}) failed: SQLSTATE {sqlstate}: {message}")]
    MigrationFailed {
        version: u32,
        name: String,
        sqlstate: String,
        message: String,
    },
    #[error("{0}")]
    Verify(String),
    /// The invocation's deadline came first: the running migration was cancelled and rolled back.
    #[error("{0}")]
    Timeout(String),
}

impl InitError {
    /// The `errorType` Lambda reports for this failure.
    pub fn error_type(&self) -> &'static str {
        match self {
            InitError::Config(_) => "Config",
            InitError::InvalidEvent(_) => "InvalidEvent",
            InitError::SecretFetch(_) => "SecretFetch",
            InitError::SecretFormat(_) => "SecretFormat",
            InitError::Connect(_) => "Connect",
            InitError::Tls(_) => "Tls",
            InitError::Auth(_) => "Auth",
            InitError::LockTimeout(_) => "LockTimeout",
            InitError::ChecksumMismatch(_) => "ChecksumMismatch",
            InitError::MigrationFailed { .. } => "MigrationFailed",
            InitError::Verify(_) => "Verify",
            InitError::Timeout(_) => "Timeout",
        }
    }

    /// Whether the same invocation may simply be retried (nothing to fix first).
    pub fn retryable(&self) -> bool {
        matches!(
            self,
            InitError::Connect(_)
                | InitError::LockTimeout(_)
                | InitError::Timeout(_)
                | InitError::SecretFetch(_)
        )
    }

    /// The message as Lambda shows it: a single line.
    pub fn one_line(&self) -> String {
        one_line(&self.to_string())
    }
}

/// Collapses whitespace runs (newlines included) so every message fits one log line.
pub fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

impl From<InitError> for Diagnostic {
    fn from(err: InitError) -> Diagnostic {
        Diagnostic {
            error_type: err.error_type().to_string(),
            error_message: err.one_line(),
        }
    }
}
