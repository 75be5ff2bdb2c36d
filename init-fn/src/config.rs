//! The function's settings, read once from the environment and validated; each error names the variable.

use std::{path::PathBuf, time::Duration};

use crate::error::InitError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }
}

/// `DB_DRIFT`: what `apply` does when the live schema differs from `sql/schema.txt` before it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DriftPolicy {
    /// Say so in the report and the log, then apply.
    #[default]
    Warn,
    /// Stop with `Verify` before changing anything.
    Fail,
}

/// `DB_AUTH`: how the function proves who it is to the database.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Auth {
    /// The password from the Secrets Manager secret `DB_SECRET_ID` (the default).
    #[default]
    Secret,
    /// An RDS IAM auth token signed with the execution role's credentials for `region`
    /// (`AWS_REGION`); no secret is read.
    Iam { region: String },
}

impl Auth {
    pub fn as_str(&self) -> &'static str {
        match self {
            Auth::Secret => "secret",
            Auth::Iam { .. } => "iam",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    /// `DB_AUTH`: `secret` (default) or `iam`.
    pub auth: Auth,
    /// `DB_HOST`; may instead come from an RDS-managed JSON secret.
    pub host: Option<String>,
    pub port: Option<u16>,
    pub dbname: Option<String>,
    pub user: Option<String>,
    pub secret_id: String,
    pub sslmode: SslMode,
    pub ca_bundle: Option<PathBuf>,
    pub connect_timeout: Duration,
    pub lock_timeout: Duration,
    pub statement_timeout: Duration,
    /// `DB_DDL_LOCK_TIMEOUT_S`: how long a migration statement may queue for a table lock.
    pub ddl_lock_timeout: Duration,
    /// `DB_DEADLINE_MARGIN_S`: time kept free before the invocation deadline to cancel and answer.
    pub deadline_margin: Duration,
    /// `DB_DRIFT`: `warn` (default) or `fail`.
    pub drift: DriftPolicy,
}

pub const DEFAULT_PORT: u16 = 5432;
pub const DEFAULT_DBNAME: &str = "documents_db";
pub const DEFAULT_USER: &str = "postgres";
pub const DEFAULT_SECRET_ID: &str = "ca-a2a/db-password";
/// The login role `DB_AUTH=iam` connects as when `DB_USER` is unset (the master user cannot take
/// IAM tokens without losing its password login).
pub const DEFAULT_IAM_USER: &str = "init_fn_migrator";

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Config, InitError> {
        Config::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads settings through `lookup` (the environment in production, a map in tests).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Config, InitError> {
        let get = |name: &str| lookup(name).map(|v| v.trim().to_string());
        let text = |name: &str| -> Result<Option<String>, InitError> {
            match get(name) {
                None => Ok(None),
                Some(v) if v.is_empty() => {
                    Err(InitError::Config(format!("{name} is set but empty")))
                }
                Some(v) => Ok(Some(v)),
            }
        };
        let seconds = |name: &str, default: u64| -> Result<Duration, InitError> {
            match get(name) {
                None => Ok(Duration::from_secs(default)),
                Some(v) => match v.parse::<u64>() {
                    Ok(n) if (1..=900).contains(&n) => Ok(Duration::from_secs(n)),
                    _ => Err(InitError::Config(format!(
                        "{name}={v:?} is not a whole number of seconds between 1 and 900"
                    ))),
                },
            }
        };
        let port = match get("DB_PORT") {
            None => None,
            Some(v) => match v.parse::<u16>() {
                Ok(p) if p > 0 => Some(p),
                _ => {
                    return Err(InitError::Config(format!(
                        "DB_PORT={v:?} is not a port number (1-65535)"
                    )));
                }
            },
        };
        let sslmode = match get("DB_SSLMODE").as_deref() {
            None => SslMode::VerifyFull,
            Some("disable") => SslMode::Disable,
            Some("require") => SslMode::Require,
            Some("verify-ca") => SslMode::VerifyCa,
            Some("verify-full") => SslMode::VerifyFull,
            Some(other) => {
                return Err(InitError::Config(format!(
                    "DB_SSLMODE={other:?} is not one of disable, require, verify-ca, verify-full"
                )));
            }
        };
        let drift = match get("DB_DRIFT").as_deref() {
            None | Some("warn") => DriftPolicy::Warn,
            Some("fail") => DriftPolicy::Fail,
            Some(other) => {
                return Err(InitError::Config(format!(
                    "DB_DRIFT={other:?} is not one of warn, fail"
                )));
            }
        };
        let auth = match get("DB_AUTH").as_deref() {
            None | Some("secret") => Auth::Secret,
            Some("iam") => {
                if !matches!(sslmode, SslMode::VerifyFull | SslMode::VerifyCa) {
                    return Err(InitError::Config(format!(
                        "DB_AUTH=iam needs DB_SSLMODE=verify-full or verify-ca, not {}: the token is a \
                         credential for 15 minutes and must only travel to a server whose certificate is verified",
                        sslmode.as_str()
                    )));
                }
                let region = text("AWS_REGION")?
                    .or(text("AWS_DEFAULT_REGION")?)
                    .ok_or_else(|| {
                        InitError::Config(
                            "DB_AUTH=iam needs AWS_REGION (the region the token is signed for)"
                                .to_string(),
                        )
                    })?;
                if text("DB_HOST")?.is_none() {
                    return Err(InitError::Config(
                        "DB_AUTH=iam needs DB_HOST (the token is signed for the host and port; no secret supplies them)"
                            .to_string(),
                    ));
                }
                Auth::Iam { region }
            }
            Some(other) => {
                return Err(InitError::Config(format!(
                    "DB_AUTH={other:?} is not one of secret, iam"
                )));
            }
        };
        let ca_bundle = text("DB_CA_BUNDLE")?.map(PathBuf::from);
        if let Some(path) = &ca_bundle
            && !path.is_file()
        {
            return Err(InitError::Config(format!(
                "DB_CA_BUNDLE={} is not a readable file",
                path.display()
            )));
        }
        // Read by `metrics` itself; checked here so a bad value is a `Config` error like any other.
        crate::invocation::metrics::namespace(lookup("METRICS_NAMESPACE").as_deref())?;
        Ok(Config {
            auth,
            host: text("DB_HOST")?,
            port,
            dbname: text("DB_NAME")?,
            user: text("DB_USER")?,
            secret_id: text("DB_SECRET_ID")?.unwrap_or_else(|| DEFAULT_SECRET_ID.to_string()),
            sslmode,
            ca_bundle,
            connect_timeout: seconds("DB_CONNECT_TIMEOUT_S", 10)?,
            lock_timeout: seconds("DB_LOCK_TIMEOUT_S", 30)?,
            statement_timeout: seconds("DB_STATEMENT_TIMEOUT_S", 60)?,
            ddl_lock_timeout: seconds("DB_DDL_LOCK_TIMEOUT_S", 5)?,
            deadline_margin: seconds("DB_DEADLINE_MARGIN_S", 3)?,
            drift,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iam_mode() {
        let c = config(&[
            ("DB_AUTH", "iam"),
            ("DB_HOST", "db.internal"),
            ("AWS_REGION", "eu-west-3"),
        ])
        .unwrap();
        assert_eq!(
            c.auth,
            Auth::Iam {
                region: "eu-west-3".to_string()
            }
        );
        for mode in ["disable", "require"] {
            let err = config(&[
                ("DB_AUTH", "iam"),
                ("DB_HOST", "h"),
                ("AWS_REGION", "eu-west-3"),
                ("DB_SSLMODE", mode),
            ])
            .unwrap_err();
            assert_eq!(err.error_type(), "Config");
            assert!(
                err.to_string().contains("DB_AUTH=iam needs DB_SSLMODE"),
                "{err}"
            );
        }
    }

    fn config(vars: &[(&str, &str)]) -> Result<Config, InitError> {
        Config::from_lookup(|name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        })
    }

    #[test]
    fn defaults() {
        let c = config(&[("DB_HOST", "db.internal")]).unwrap();
        assert_eq!(c.host.as_deref(), Some("db.internal"));
        assert_eq!(c.port, None);
        assert_eq!(c.secret_id, "ca-a2a/db-password");
        assert_eq!(c.sslmode, SslMode::VerifyFull);
        assert_eq!(c.connect_timeout, Duration::from_secs(10));
        assert_eq!(c.lock_timeout, Duration::from_secs(30));
        assert_eq!(c.statement_timeout, Duration::from_secs(60));
        assert_eq!(c.ddl_lock_timeout, Duration::from_secs(5));
        assert_eq!(c.deadline_margin, Duration::from_secs(3));
        assert_eq!(c.drift, DriftPolicy::Warn);
        assert_eq!(c.auth, Auth::Secret);
        let fail = config(&[("DB_DRIFT", "fail")]).unwrap();
        assert_eq!(fail.drift, DriftPolicy::Fail);
    }

    #[test]
    fn bad_values_name_the_variable() {
        for (vars, needle) in [
            (vec![("DB_PORT", "0")], "DB_PORT"),
            (vec![("DB_PORT", "abc")], "DB_PORT"),
            (vec![("DB_SSLMODE", "prefer")], "DB_SSLMODE"),
            (vec![("DB_CONNECT_TIMEOUT_S", "-1")], "DB_CONNECT_TIMEOUT_S"),
            (vec![("DB_LOCK_TIMEOUT_S", "0")], "DB_LOCK_TIMEOUT_S"),
            (
                vec![("DB_STATEMENT_TIMEOUT_S", "x")],
                "DB_STATEMENT_TIMEOUT_S",
            ),
            (
                vec![("DB_DDL_LOCK_TIMEOUT_S", "0")],
                "DB_DDL_LOCK_TIMEOUT_S",
            ),
            (
                vec![("DB_DEADLINE_MARGIN_S", "2.5")],
                "DB_DEADLINE_MARGIN_S",
            ),
            (vec![("DB_HOST", "  ")], "DB_HOST"),
            (vec![("DB_DRIFT", "strict")], "DB_DRIFT"),
            (vec![("DB_AUTH", "password")], "DB_AUTH"),
            (
                vec![("DB_AUTH", "iam"), ("DB_SSLMODE", "require")],
                "verify-full",
            ),
            (
                vec![("DB_AUTH", "iam"), ("DB_HOST", "h"), ("AWS_REGION", " ")],
                "AWS_REGION",
            ),
            (
                vec![("DB_AUTH", "iam"), ("AWS_REGION", "eu-west-3")],
                "DB_HOST",
            ),
            (
                vec![("DB_CA_BUNDLE", "/nonexistent/ca.pem")],
                "DB_CA_BUNDLE",
            ),
            (
                vec![("METRICS_NAMESPACE", "AWS/Lambda")],
                "METRICS_NAMESPACE",
            ),
        ] {
            let err = config(&vars).unwrap_err();
            assert_eq!(err.error_type(), "Config", "{vars:?}");
            assert!(
                err.to_string().contains(needle),
                "{err} should name {needle}"
            );
        }
    }
}
