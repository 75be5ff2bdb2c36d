//! An existing Postgres server given by `postgres://` URL, used as is: where it is, who connects,
//! and the TLS settings libpq's `sslmode`/`sslrootcert` ask for. The URL may hold a password:
//! nothing here puts it in an error message.

use anyhow::bail;

use super::SUPERUSER;

/// What the URL says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: String,
    pub ca_bundle: Option<std::path::PathBuf>,
    pub sslmode: String,
}

/// Parses the URL; without a password in it, libpq's PGPASSWORD (keeps it off the command line).
pub fn parse(url: &str) -> anyhow::Result<Target> {
    let (url, sslmode, sslrootcert) = split_tls_params(url);
    let config: tokio_postgres::Config = url
        .parse()
        .map_err(|_| anyhow::anyhow!("postgres: --postgres is not a valid postgres:// URL"))?;
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        _ => bail!("postgres: the URL needs a TCP host"),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let user = config.get_user().unwrap_or(SUPERUSER).to_string();
    let password = config
        .get_password()
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .or_else(|| std::env::var("PGPASSWORD").ok())
        .unwrap_or_default();
    let ca_bundle = sslrootcert.map(|p| crate::project_root().join(p));
    let sslmode = sslmode.unwrap_or_else(|| {
        if ca_bundle.is_some() {
            "verify-full"
        } else {
            "require"
        }
        .to_string()
    });
    Ok(Target {
        host,
        port,
        user,
        password,
        ca_bundle,
        sslmode,
    })
}

/// Take libpq's `sslmode` and `sslrootcert` out of a URL's query (tokio-postgres rejects
/// `sslrootcert` and `verify-full`); they become the bootstrap's `DB_SSLMODE`/`DB_CA_BUNDLE`.
fn split_tls_params(url: &str) -> (String, Option<String>, Option<String>) {
    let Some((base, query)) = url.split_once('?') else {
        return (url.to_string(), None, None);
    };
    let (mut sslmode, mut sslrootcert, mut rest) = (None, None, Vec::new());
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("sslmode", v)) => sslmode = Some(v.to_string()),
            Some(("sslrootcert", v)) => sslrootcert = Some(v.to_string()),
            _ => rest.push(pair),
        }
    }
    let url = if rest.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", rest.join("&"))
    };
    (url, sslmode, sslrootcert)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_tls_params_from_urls() {
        assert_eq!(
            split_tls_params(
                "postgres://u:p@localhost:5432/db?sslmode=verify-full&sslrootcert=target/ca.pem"
            ),
            (
                "postgres://u:p@localhost:5432/db".to_string(),
                Some("verify-full".to_string()),
                Some("target/ca.pem".to_string())
            )
        );
        assert_eq!(
            split_tls_params("postgres://h/db?connect_timeout=5&sslmode=require"),
            (
                "postgres://h/db?connect_timeout=5".to_string(),
                Some("require".to_string()),
                None
            )
        );
        assert_eq!(
            split_tls_params("postgres://h/db"),
            ("postgres://h/db".to_string(), None, None)
        );
    }
}
