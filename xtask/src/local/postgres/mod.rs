//! Postgres providers for local runs and tests: a Docker container (`docker`, through
//! testcontainers-modules with the `docker` feature; `container`), a temporary
//! cluster from the local PostgreSQL binaries (`cluster`), or an existing server given by URL
//! (`url`). Docker and local servers get a per-run CA and a `localhost` server certificate, so
//! `verify-full` is exercised like against RDS. This file is the choice and the running server.

#[cfg(feature = "docker")]
mod abandoned;
mod cluster;
#[cfg(feature = "docker")]
mod container;
mod docker;
mod dump;
mod url;

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use anyhow::{Context, bail};

use super::tls::SERVER_NAME;
pub use cluster::local_bin_dir;
pub use docker::{DEFAULT_IMAGE, LABEL_KEY, LABEL_VALUE, choice_needs_docker, hand_over_if_docker};
/// A Docker engine answers within the probe's timeout: bollard's ping with the `docker` feature, else
/// `docker info` (no Docker client compiled in).
pub async fn docker_answers() -> bool {
    #[cfg(feature = "docker")]
    {
        container::engine_answers().await
    }
    #[cfg(not(feature = "docker"))]
    {
        docker::cli_answers().await
    }
}

#[cfg(feature = "docker")]
pub use container::template_volume_name;
pub use dump::normalize_dump;
/// The provider's testcontainers (and through it bollard), for tests that inspect its containers.
#[cfg(feature = "docker")]
pub use testcontainers_modules;

/// The superuser every provider hands out (`POSTGRES_USER` of the image, `initdb -U`).
const SUPERUSER: &str = "postgres";

/// Which Postgres server to run against (`--postgres auto|docker|local|URL`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PgChoice {
    /// Docker when an engine answers, else local binaries, else an error naming both ways.
    Auto,
    /// A Docker container of `image` (`name:tag`).
    Docker { image: String },
    /// A temporary cluster from the PostgreSQL server binaries on this machine.
    Local,
    /// An existing server, used as is (`postgres://user:password@host:port/db`).
    Url(String),
}

impl FromStr for PgChoice {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> anyhow::Result<PgChoice> {
        match s {
            "auto" => Ok(PgChoice::Auto),
            "docker" => Ok(PgChoice::Docker {
                image: DEFAULT_IMAGE.to_string(),
            }),
            "local" => Ok(PgChoice::Local),
            url if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                Ok(PgChoice::Url(url.to_string()))
            }
            // Not echoed: it could be a mistyped URL with a password in it.
            _ => {
                bail!("unknown --postgres value: expected auto, docker, local or a postgres:// URL")
            }
        }
    }
}

impl PgChoice {
    /// The same choice with `image` for Docker (`--image`); other choices are unchanged.
    pub fn with_image(self, image: &str) -> PgChoice {
        match self {
            PgChoice::Docker { .. } => PgChoice::Docker {
                image: image.to_string(),
            },
            other => other,
        }
    }
}

/// A running Postgres server. Dropping it removes the container or stops the temporary cluster and
/// deletes its directory (drop it inside the tokio runtime: container removal is async).
/// A URL server is left alone.
pub struct PgServer {
    backend: Backend,
    host: String,
    port: u16,
    user: String,
    password: String,
    ca_bundle: Option<PathBuf>,
    sslmode: String,
}

enum Backend {
    #[cfg(feature = "docker")]
    Docker(Box<container::Container>),
    Local(cluster::Cluster),
    Url,
}

impl std::fmt::Debug for PgServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgServer")
            .field("kind", &self.kind())
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("password", &"[hidden]")
            .finish()
    }
}

impl PgServer {
    /// Start (or, for a URL, connect to) the chosen server and wait until it accepts connections.
    pub async fn start(choice: &PgChoice) -> anyhow::Result<PgServer> {
        match choice {
            PgChoice::Docker { image } => start_docker(image).await,
            PgChoice::Local => start_local().await,
            PgChoice::Url(url) => start_url(url).await,
            PgChoice::Auto => {
                if docker_answers().await {
                    return start_docker(DEFAULT_IMAGE).await;
                }
                if crate::is_ci() {
                    bail!(
                        "postgres auto: no Docker engine answers within {}s, and under CI \
                         auto does not fall back; start Docker or pass --postgres local",
                        docker::DOCKER_PROBE_TIMEOUT.as_secs()
                    );
                }
                if local_bin_dir().is_ok() {
                    return start_local().await;
                }
                bail!(
                    "postgres auto: no Docker engine answers and no PostgreSQL server \
                     binaries (initdb, pg_ctl, postgres) are on PATH or in /usr/lib/postgresql/*/bin; \
                     start Docker, install the PostgreSQL server package, or pass --postgres postgres://…"
                )
            }
        }
    }

    /// `"docker"`, `"local"` or `"url"`.
    pub fn kind(&self) -> &'static str {
        match self.backend {
            #[cfg(feature = "docker")]
            Backend::Docker(_) => "docker",
            Backend::Local(_) => "local",
            Backend::Url => "url",
        }
    }

    /// The host to connect to; `localhost` (the name in the server certificate) for docker/local.
    pub fn host(&self) -> &str {
        &self.host
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn user(&self) -> &str {
        &self.user
    }

    /// The superuser's password (random per run for docker/local). Never print it.
    pub fn password(&self) -> &str {
        &self.password
    }

    /// PEM of the per-run CA that signed the server certificate (`None` for a URL server).
    pub fn ca_bundle_path(&self) -> Option<&Path> {
        self.ca_bundle.as_deref()
    }

    /// The `DB_SSLMODE` the bootstrap should use: `verify-full` with the per-run CA for
    /// docker/local; for a URL its `sslmode` parameter, else `verify-full` when it names an
    /// `sslrootcert`, else `require`.
    pub fn sslmode(&self) -> &str {
        &self.sslmode
    }

    /// `SHOW server_version`, e.g. `17.6 (Debian 17.6-1)`.
    pub async fn server_version(&self) -> anyhow::Result<String> {
        let client = self.client("postgres").await?;
        let row = client.query_one("SHOW server_version", &[]).await?;
        Ok(row.get(0))
    }

    /// Create a fresh empty database. On a URL server this creates it there too (and fails when
    /// it exists); nothing here ever drops a database.
    pub async fn create_database(&self, name: &str) -> anyhow::Result<()> {
        let client = self.client("postgres").await?;
        client
            .batch_execute(&format!("CREATE DATABASE {}", quote_ident(name)))
            .await
            .with_context(|| format!("postgres: create database {name}"))?;
        Ok(())
    }

    /// A superuser connection to `db` without TLS (the test harness's own access; the bootstrap
    /// under test uses TLS).
    pub async fn client(&self, db: &str) -> anyhow::Result<tokio_postgres::Client> {
        // A local cluster listens on 127.0.0.1 only: never try ::1 for `localhost`.
        let host = match self.backend {
            Backend::Local(_) => "127.0.0.1",
            _ => &self.host,
        };
        let mut config = tokio_postgres::Config::new();
        config
            .host(host)
            .port(self.port)
            .user(&self.user)
            .password(&self.password)
            .dbname(db)
            .connect_timeout(Duration::from_secs(10));
        let (client, connection) = config
            .connect(tokio_postgres::NoTls)
            .await
            .with_context(|| format!("postgres: connect to {}:{}/{db}", self.host, self.port))?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(client)
    }

    /// The `public` schema of `db` as `pg_dump --schema-only` prints it (ledger, owners and
    /// privileges excluded), normalized: no comments, `SET`/`set_config` lines, `\restrict` lines
    /// or blank lines.
    pub async fn dump_schema(&self, db: &str) -> anyhow::Result<String> {
        let args = dump::args();
        let raw = match &self.backend {
            // The server's own pg_dump: a host pg_dump older than the server refuses to dump it.
            #[cfg(feature = "docker")]
            Backend::Docker(container) => container.pg_dump(&args, db).await?,
            Backend::Local(cluster) => dump::run(cluster.pg_dump(&args, db)).await?,
            Backend::Url => {
                // The host's pg_dump: it must not be older than the server.
                let mut cmd = tokio::process::Command::new("pg_dump");
                cmd.args(&args)
                    .arg("-h")
                    .arg(&self.host)
                    .arg("-p")
                    .arg(self.port.to_string())
                    .arg("-U")
                    .arg(&self.user)
                    .arg("-d")
                    .arg(db)
                    .env("PGPASSWORD", &self.password);
                dump::run(cmd).await?
            }
        };
        Ok(normalize_dump(&raw))
    }

    /// Stop the server now (the same as dropping it, but awaits container removal).
    pub async fn stop(self) -> anyhow::Result<()> {
        match self.backend {
            #[cfg(feature = "docker")]
            Backend::Docker(container) => container.remove().await?,
            Backend::Local(cluster) => drop(cluster),
            Backend::Url => {}
        }
        Ok(())
    }

    /// The Docker provider's container id (`None` for local and URL servers), for tests that inspect it.
    pub fn container_id(&self) -> Option<&str> {
        match &self.backend {
            #[cfg(feature = "docker")]
            Backend::Docker(container) => Some(container.id()),
            _ => None,
        }
    }
}

fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn random_password() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

async fn start_docker(image: &str) -> anyhow::Result<PgServer> {
    start_docker_with(image, &[]).await
}

/// A Docker server with `extra_args` for `postgres` (e.g. `-c name=value`); tests use it to make a
/// start fail on purpose.
#[cfg(feature = "docker")]
pub async fn start_docker_with(image: &str, extra_args: &[String]) -> anyhow::Result<PgServer> {
    let container = container::start(image, random_password(), extra_args).await?;
    Ok(PgServer {
        host: SERVER_NAME.to_string(),
        port: container.port,
        user: SUPERUSER.to_string(),
        password: container.password.clone(),
        ca_bundle: Some(container.ca_path.clone()),
        sslmode: "verify-full".to_string(),
        backend: Backend::Docker(Box::new(container)),
    })
}

#[cfg(not(feature = "docker"))]
async fn start_docker_with(image: &str, _extra_args: &[String]) -> anyhow::Result<PgServer> {
    bail!(
        "postgres docker: this binary was built without the `docker` feature (testcontainers); run it \
         as `cargo xtask …`, which builds xtask-docker, or build with --features docker (image {image})"
    )
}

async fn start_local() -> anyhow::Result<PgServer> {
    let cluster = cluster::start(random_password()).await?;
    Ok(PgServer {
        host: SERVER_NAME.to_string(),
        port: cluster.port,
        user: SUPERUSER.to_string(),
        password: cluster.password.clone(),
        ca_bundle: Some(cluster.ca_path.clone()),
        sslmode: "verify-full".to_string(),
        backend: Backend::Local(cluster),
    })
}

async fn start_url(url: &str) -> anyhow::Result<PgServer> {
    let t = url::parse(url)?;
    let server = PgServer {
        backend: Backend::Url,
        host: t.host,
        port: t.port,
        user: t.user,
        password: t.password,
        ca_bundle: t.ca_bundle,
        sslmode: t.sslmode,
    };
    server
        .client("postgres")
        .await
        .context("postgres: the server given by URL does not accept a connection")?;
    Ok(server)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_choices() {
        assert_eq!("auto".parse::<PgChoice>().unwrap(), PgChoice::Auto);
        assert_eq!("local".parse::<PgChoice>().unwrap(), PgChoice::Local);
        assert_eq!(
            "docker".parse::<PgChoice>().unwrap(),
            PgChoice::Docker {
                image: "postgres:17".into()
            }
        );
        assert_eq!(
            "postgres://u:p@localhost:5432/x"
                .parse::<PgChoice>()
                .unwrap(),
            PgChoice::Url("postgres://u:p@localhost:5432/x".into())
        );
        assert!("mysql://x".parse::<PgChoice>().is_err());
    }
}
