//! Postgres in a Docker container of a pinned image, with TLS on, driven through the `docker` CLI
//! (no Docker API client to compile: that was 93 of the xtask's 245 crates). The run's certificate
//! and the password reach the container through the CLI's environment, never its arguments (which
//! `ps` shows); `pg_dump` runs inside it (a host `pg_dump` older than the server refuses to dump it).

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::process::Command;

use super::SUPERUSER;
use crate::local::tls::RunCertificates;

/// The image `docker` uses unless `--image` says otherwise.
pub const DEFAULT_IMAGE: &str = "postgres:17";
/// How long `docker info` may take before Docker counts as "not answering".
pub const DOCKER_PROBE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the server may take to initialise its cluster and accept TCP connections.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(90);
/// How often a slow start says it is still waiting.
const STARTUP_HEARTBEAT: Duration = Duration::from_secs(10);
/// Label on every container this provider starts (`docker ps --filter label=init-fn-local`).
const LABEL: &str = "init-fn-local=postgres";

/// `docker info` answers within [`DOCKER_PROBE_TIMEOUT`].
pub async fn docker_answers() -> bool {
    let probe = Command::new("docker")
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

/// A running container; dropping it removes the container.
pub struct Container {
    id: String,
    /// Holds `ca.pem` for the bootstrap (`DB_CA_BUNDLE`).
    _dir: tempfile::TempDir,
    pub port: u16,
    pub password: String,
    pub ca_path: PathBuf,
}

/// The container's command: a shell writes the run's certificate and key (from the environment)
/// owned by `postgres` with mode 0600, which the server insists on, then hands over to the image's
/// own entrypoint.
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

/// `postgres:17` → (`postgres`, `17`); `registry:5000/pg:17` → (`registry:5000/pg`, `17`).
fn split_image(image: &str) -> anyhow::Result<(&str, &str)> {
    match image.rsplit_once(':') {
        Some((name, tag)) if !tag.contains('/') && !name.is_empty() && !tag.is_empty() => {
            Ok((name, tag))
        }
        _ => bail!("postgres image `{image}` needs a pinned tag, e.g. postgres:17"),
    }
}

/// `docker <args>` with `env` added to the CLI's environment; its stdout as printed, or an error
/// with its stderr.
async fn docker(args: &[&str], env: &[(&str, &str)]) -> anyhow::Result<String> {
    let mut cmd = Command::new("docker");
    cmd.args(args).stdin(Stdio::null()).kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd
        .output()
        .await
        .context("postgres: run `docker` (is the Docker CLI installed?)")?;
    if !out.status.success() {
        bail!(
            "`docker {}` exited with {}: {}",
            args.first().unwrap_or(&""),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    String::from_utf8(out.stdout).context("postgres: `docker` printed something that is not UTF-8")
}

/// Starts a container of `image` with a fresh password and the run's certificates, and waits until
/// the server accepts TCP connections (after the image's init, which restarts the server once).
pub async fn start(image: &str, password: String) -> anyhow::Result<Container> {
    split_image(image)?;
    let certs = RunCertificates::generate()?;
    let env = [
        ("POSTGRES_USER", SUPERUSER),
        ("POSTGRES_PASSWORD", password.as_str()),
        ("POSTGRES_DB", "postgres"),
        ("INIT_FN_TLS_CERT", certs.server_cert_pem.as_str()),
        ("INIT_FN_TLS_KEY", certs.server_key_pem.as_str()),
    ];
    // `-e NAME` without a value: docker copies it from its own environment.
    let mut args = vec!["run", "--detach", "--pull", "never", "--label", LABEL];
    args.extend(["--publish", "127.0.0.1::5432", "--entrypoint", "/bin/sh"]);
    for (k, _) in &env {
        args.extend(["--env", k]);
    }
    args.extend([image, "-c", DOCKER_TLS_SCRIPT]);
    let id = docker(&args, &env)
        .await
        .map(|id| id.trim().to_string())
        .with_context(|| {
            format!(
                "postgres: start container {image} (is the image present? `docker pull {image}`, \
             or build it offline with ../shared/ci/offline-postgres-image.sh {image})"
            )
        })?;
    // From here on, dropping `container` removes it, whatever fails next.
    let dir = tempfile::Builder::new().prefix("init-fn-ca-").tempdir()?;
    let ca_path = dir.path().join("ca.pem");
    let mut container = Container {
        id,
        _dir: dir,
        port: 0,
        password,
        ca_path,
    };
    std::fs::write(&container.ca_path, &certs.ca_pem)?;
    container.port = container.mapped_port().await?;
    container.wait_ready(image).await?;
    Ok(container)
}

impl Container {
    /// The host port Docker mapped the container's 5432 to (`127.0.0.1:49153` → 49153).
    async fn mapped_port(&self) -> anyhow::Result<u16> {
        let out = docker(&["port", &self.id, "5432/tcp"], &[])
            .await
            .context("postgres: mapped port of 5432")?;
        out.lines()
            .find_map(|l| l.rsplit_once(':').and_then(|(_, p)| p.parse().ok()))
            .with_context(|| format!("postgres: `docker port` printed no port: {out}"))
    }

    /// Polls `pg_isready` over TCP inside the container: the image's init phase runs a server on
    /// the Unix socket only, so TCP answers only once the final server is up.
    async fn wait_ready(&self, image: &str) -> anyhow::Result<()> {
        let started = Instant::now();
        let mut next_note = STARTUP_HEARTBEAT;
        loop {
            let probe = ["exec", &self.id, "pg_isready", "-q", "-h", "127.0.0.1"];
            if docker(&[&probe[..], &["-U", SUPERUSER]].concat(), &[])
                .await
                .is_ok()
            {
                return Ok(());
            }
            let state = docker(&["inspect", "--format", "{{.State.Status}}", &self.id], &[])
                .await
                .unwrap_or_default();
            let state = state.trim();
            if state != "running" && state != "created" {
                let logs = self.logs_tail().await;
                bail!("postgres: container {image} stopped while starting ({state}): {logs}");
            }
            let waited = started.elapsed();
            if waited > STARTUP_TIMEOUT {
                let logs = self.logs_tail().await;
                bail!(
                    "postgres: container {image} did not accept connections within {}s: {logs}",
                    STARTUP_TIMEOUT.as_secs()
                );
            }
            if waited >= next_note {
                eprintln!(
                    "postgres: waiting for container {image} to accept connections ({}s)",
                    waited.as_secs()
                );
                next_note += STARTUP_HEARTBEAT;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The last lines the server printed, for an error message.
    async fn logs_tail(&self) -> String {
        let out = Command::new("docker")
            .args(["logs", "--tail", "5", &self.id])
            .stdin(Stdio::null())
            .output()
            .await;
        match out {
            Ok(o) => {
                let text = [o.stdout, o.stderr].concat();
                String::from_utf8_lossy(&text).trim().replace('\n', " | ")
            }
            Err(e) => format!("(docker logs: {e})"),
        }
    }

    /// `pg_dump <args> -d <db>` inside the container, as the superuser.
    pub async fn pg_dump(&self, args: &[String], db: &str) -> anyhow::Result<String> {
        let mut cmd: Vec<&str> = vec!["exec", &self.id, "pg_dump", "-U", SUPERUSER];
        cmd.extend(args.iter().map(String::as_str));
        cmd.extend(["-d", db]);
        docker(&cmd, &[])
            .await
            .context("postgres: pg_dump in the container")
    }

    /// Removes the container now (dropping it does the same, without waiting).
    pub async fn remove(mut self) -> anyhow::Result<()> {
        let id = std::mem::take(&mut self.id);
        docker(&["rm", "--force", "--volumes", &id], &[])
            .await
            .context("postgres: remove container")?;
        Ok(())
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        if self.id.is_empty() {
            return; // removed already
        }
        // Best effort and detached: a drop must not block the runtime it runs in.
        let _ = std::process::Command::new("docker")
            .args(["rm", "--force", "--volumes", &self.id])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
    }
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
