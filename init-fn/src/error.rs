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

/// A failed query of the engine's own (bookkeeping, catalog, plan lookups; never a migration's SQL):
/// [`server_error`] of it.
pub fn query_error(what: &str, err: tokio_postgres::Error) -> InitError {
    server_error(what, &err)
}

/// The one way a server error of the engine's own queries becomes an [`InitError`]: `what` failed,
/// then the server's message, detail and SQLSTATE on one line; the variant follows the SQLSTATE
/// ([`class_of`]). An error without a server answer (I/O, closed socket) is `Connect`.
pub fn server_error(what: &str, err: &tokio_postgres::Error) -> InitError {
    let Some(code) = err.code().map(|c| c.code()) else {
        return InitError::Connect(one_line(&format!("{what}: {}; retry", chain(err))));
    };
    let words = server_words(err);
    let line = |advice: &str| one_line(&format!("{what}: {words}; {advice}"));
    match class_of(code) {
        ServerClass::Connect => InitError::Connect(line("retry")),
        ServerClass::Timeout => InitError::Timeout(line("retry, or raise DB_STATEMENT_TIMEOUT_S")),
        ServerClass::LockTimeout => {
            InitError::LockTimeout(line("another session held what it needed; retry"))
        }
        ServerClass::Auth => {
            InitError::Auth(line("not retryable: grant the database user what it lacks"))
        }
        ServerClass::Verify => InitError::Verify(line(
            "not retryable: the database is not as this query expects (its name, version or data); a retry gives the same answer",
        )),
    }
}

/// The server's own words: `message: detail (SQLSTATE code)`, the detail when it sent one; for an
/// error without a server answer, its text.
pub fn server_words(err: &tokio_postgres::Error) -> String {
    match err.as_db_error() {
        Some(db) => {
            let detail = db.detail().map(|d| format!(": {d}")).unwrap_or_default();
            one_line(&format!(
                "{}{detail} (SQLSTATE {})",
                db.message(),
                db.code().code()
            ))
        }
        None => chain(err),
    }
}

/// The `InitError` variant a server error of the engine's own queries gets, by SQLSTATE (the
/// error table of `init-fn/README.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerClass {
    /// Class 08 (connection exception), 53 (insufficient resources), 57P01-57P05 (admin or crash
    /// shutdown, cannot connect now, idle session timeout) and 58 (system error): retryable.
    Connect,
    /// 57014: a statement timeout or cancel.
    Timeout,
    /// 55P03 (lock not available) and class 40 (serialization failure, deadlock): retryable.
    LockTimeout,
    /// Class 28 and 42501: the user, or a privilege it lacks.
    Auth,
    /// Everything else (42 syntax or name errors, 22 data, 0A not supported, XX internal …): the
    /// same query gives the same answer, so not retryable.
    Verify,
}

/// See [`ServerClass`].
pub fn class_of(sqlstate: &str) -> ServerClass {
    match sqlstate {
        "57014" => ServerClass::Timeout,
        "55P03" => ServerClass::LockTimeout,
        "42501" => ServerClass::Auth,
        "57P01" | "57P02" | "57P03" | "57P04" | "57P05" => ServerClass::Connect,
        c if c.starts_with("08") || c.starts_with("53") || c.starts_with("58") => {
            ServerClass::Connect
        }
        c if c.starts_with("40") => ServerClass::LockTimeout,
        c if c.starts_with("28") => ServerClass::Auth,
        _ => ServerClass::Verify,
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
