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

/// The error and its causes in plain words, `a: b: c` on one line: the `Display` of each source in
/// turn, skipping a cause whose text the line already holds (wrappers that print their source). Never
/// `Debug`: that is for programmers, and the SDK's Debug of a transport error runs to pages.
pub fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut line = String::new();
    let mut next = Some(err);
    while let Some(err) = next {
        let text = one_line(&err.to_string());
        if !text.is_empty() && !line.contains(&text) {
            if !line.is_empty() {
                line.push_str(": ");
            }
            line.push_str(&text);
        }
        next = err.source();
    }
    line
}

/// A failed bookkeeping query (not a migration's own SQL): `Connect`, with the server's reason.
pub fn query_error(what: &str, err: tokio_postgres::Error) -> InitError {
    match err.as_db_error() {
        Some(db) => InitError::Connect(one_line(&format!(
            "{what}: {} (SQLSTATE {})",
            db.message(),
            db.code().code()
        ))),
        None => InitError::Connect(one_line(&format!("{what}: {err}"))),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Layer(&'static str, Option<Box<Layer>>);

    impl std::fmt::Display for Layer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }

    impl std::error::Error for Layer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1.as_deref().map(|l| l as _)
        }
    }

    #[test]
    fn chain_joins_causes_once_each_without_debug() {
        let err = Layer(
            "dispatch failure",
            Some(Box::new(Layer(
                "io error",
                Some(Box::new(Layer(
                    "client error (Connect)",
                    Some(Box::new(Layer(
                        "invalid peer certificate: UnknownIssuer",
                        // A wrapper that already printed its source, then that source again.
                        Some(Box::new(Layer(
                            "UnknownIssuer",
                            Some(Box::new(Layer("", None))),
                        ))),
                    ))),
                ))),
            ))),
        );
        assert_eq!(
            chain(&err),
            "dispatch failure: io error: client error (Connect): invalid peer certificate: UnknownIssuer"
        );
    }
}
