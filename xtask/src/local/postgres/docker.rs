//! Postgres in a testcontainers container of a pinned image, with TLS on: the run's certificate is
//! handed to the container through its environment; `pg_dump` runs inside it (a host `pg_dump`
//! older than the server refuses to dump it).

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use testcontainers_modules::postgres::Postgres;
use testcontainers_modules::testcontainers::core::{ExecCommand, ExecResult, WaitFor};
use testcontainers_modules::testcontainers::runners::AsyncRunner;
use testcontainers_modules::testcontainers::{ContainerAsync, Image, ImageExt};

use super::SUPERUSER;
use crate::local::tls::RunCertificates;

/// The image `docker` uses unless `--image` says otherwise.
pub const DEFAULT_IMAGE: &str = "postgres:17";
/// How long `docker info` may take before Docker counts as "not answering".
pub const DOCKER_PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// `docker info` answers within [`DOCKER_PROBE_TIMEOUT`].
pub async fn docker_answers() -> bool {
    let probe = tokio::process::Command::new("docker")
        .args(["info", "--format", "{{.ServerVersion}}"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .status();
    matches!(
        tokio::time::timeout(DOCKER_PROBE_TIMEOUT, probe).await,
        Ok(Ok(status)) if status.success()
    )
}

/// A running container; dropping it removes the container (inside the tokio runtime).
pub struct Container {
    container: Box<ContainerAsync<TlsPostgres>>,
    /// Holds `ca.pem` for the bootstrap (`DB_CA_BUNDLE`).
    _dir: tempfile::TempDir,
    pub port: u16,
    pub password: String,
    pub ca_path: PathBuf,
}

/// The Postgres image with TLS on: a shell entrypoint writes the run's certificate and key (from
/// the environment) owned by `postgres` with mode 0600, which the server insists on, then hands
/// over to the image's own entrypoint.
#[derive(Debug, Clone)]
struct TlsPostgres {
    name: String,
    tag: String,
    env: HashMap<String, String>,
    cmd: Vec<String>,
}

const DOCKER_TLS_SCRIPT: &str = r#"set -e
mkdir -p /etc/init-fn-tls
printf '%s\n' "$INIT_FN_TLS_CERT" > /etc/init-fn-tls/server.crt
printf '%s\n' "$INIT_FN_TLS_KEY" > /etc/init-fn-tls/server.key
unset INIT_FN_TLS_CERT INIT_FN_TLS_KEY
chown -R postgres /etc/init-fn-tls
chmod 700 /etc/init-fn-tls
chmod 600 /etc/init-fn-tls/server.key
exec docker-entrypoint.sh postgres -c fsync=off -c ssl=on \
  -c ssl_cert_file=/etc/init-fn-tls/server.crt -c ssl_key_file=/etc/init-fn-tls/server.key
"#;

impl Image for TlsPostgres {
    fn name(&self) -> &str {
        &self.name
    }

    fn tag(&self) -> &str {
        &self.tag
    }

    fn ready_conditions(&self) -> Vec<WaitFor> {
        // The module's wait: the "ready to accept connections" line (after init, and final).
        Postgres::default().ready_conditions()
    }

    fn env_vars(
        &self,
    ) -> impl IntoIterator<Item = (impl Into<Cow<'_, str>>, impl Into<Cow<'_, str>>)> {
        &self.env
    }

    fn entrypoint(&self) -> Option<&str> {
        Some("/bin/sh")
    }

    fn cmd(&self) -> impl IntoIterator<Item = impl Into<Cow<'_, str>>> {
        self.cmd.iter().map(String::as_str)
    }
}

/// `postgres:17` → (`postgres`, `17`); `registry:5000/pg:17` → (`registry:5000/pg`, `17`).
fn split_image(image: &str) -> anyhow::Result<(&str, &str)> {
    match image.rsplit_once(':') {
        Some((name, tag)) if !tag.contains('/') && !name.is_empty() && !tag.is_empty() => {
            Ok((name, tag))
        }
        _ => bail!("postgres image `{image}` needs a pinned tag, e.g. postgres:17"),
    }
}

/// Starts a container of `image` with a fresh password and the run's certificates.
pub async fn start(image: &str, password: String) -> anyhow::Result<Container> {
    let (name, tag) = split_image(image)?;
    let certs = RunCertificates::generate()?;
    let env = HashMap::from([
        ("POSTGRES_USER".to_string(), SUPERUSER.to_string()),
        ("POSTGRES_PASSWORD".to_string(), password.clone()),
        ("POSTGRES_DB".to_string(), "postgres".to_string()),
        (
            "INIT_FN_TLS_CERT".to_string(),
            certs.server_cert_pem.clone(),
        ),
        ("INIT_FN_TLS_KEY".to_string(), certs.server_key_pem.clone()),
    ]);
    let image_def = TlsPostgres {
        name: name.to_string(),
        tag: tag.to_string(),
        env,
        cmd: vec!["-c".to_string(), DOCKER_TLS_SCRIPT.to_string()],
    };
    let container = image_def
        .with_startup_timeout(Duration::from_secs(90))
        .start()
        .await
        .with_context(|| {
            format!(
                "postgres: start container {image} (is the image present? `docker pull {image}`, \
                 or build it offline with ../shared/ci/offline-postgres-image.sh {image})"
            )
        })?;
    let port = container
        .get_host_port_ipv4(5432)
        .await
        .context("postgres: mapped port of 5432")?;
    let dir = tempfile::Builder::new().prefix("init-fn-ca-").tempdir()?;
    let ca_path = dir.path().join("ca.pem");
    std::fs::write(&ca_path, &certs.ca_pem)?;
    Ok(Container {
        container: Box::new(container),
        _dir: dir,
        port,
        password,
        ca_path,
    })
}

impl Container {
    /// `pg_dump <args> -d <db>` inside the container, as the superuser.
    pub async fn pg_dump(&self, args: &[String], db: &str) -> anyhow::Result<String> {
        let mut cmd = vec!["pg_dump".to_string(), "-U".into(), SUPERUSER.into()];
        cmd.extend_from_slice(args);
        cmd.extend(["-d".to_string(), db.to_string()]);
        let mut exec = self
            .container
            .exec(ExecCommand::new(cmd))
            .await
            .context("postgres: docker exec pg_dump")?;
        let stdout = exec.stdout_to_vec().await?;
        let stderr = exec.stderr_to_vec().await?;
        let code = exit_code(&exec).await?;
        if code != 0 {
            bail!(
                "postgres: pg_dump in the container exited with {code}: {}",
                String::from_utf8_lossy(&stderr).trim()
            );
        }
        String::from_utf8(stdout).context("postgres: pg_dump output is not UTF-8")
    }

    /// Removes the container now (dropping it does the same, without waiting).
    pub async fn remove(self) -> anyhow::Result<()> {
        self.container
            .rm()
            .await
            .context("postgres: remove container")
    }
}

async fn exit_code(exec: &ExecResult) -> anyhow::Result<i64> {
    // Output streams end just before Docker records the exit code.
    for _ in 0..500 {
        if let Some(code) = exec.exit_code().await? {
            return Ok(code);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    bail!("postgres: docker exec did not report an exit code")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_images() {
        assert_eq!(split_image("postgres:17").unwrap(), ("postgres", "17"));
        assert_eq!(
            split_image("r:5000/pg:17-alpine").unwrap(),
            ("r:5000/pg", "17-alpine")
        );
        assert!(split_image("postgres").is_err());
        assert!(split_image("r:5000/pg").is_err());
    }
}
