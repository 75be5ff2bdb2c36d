//! The Docker provider proper (feature `docker`): a PostgreSQL container of a pinned, already present
//! image through `testcontainers-modules`' `Postgres` image and the async runner, TLS on with the run's
//! certificates. The password reaches the container through the Docker API's environment (no process
//! argv anywhere holds it); the certificate and key are copied in. A short `/bin/sh` start command
//! gives them to `postgres` with mode 0600 (the server insists), runs `initdb` into a tmpfs and starts
//! the server once, with the settings of a throwaway database: the images' own entrypoints (the
//! official one and `../shared/ci/offline-postgres-image.sh`'s) start, stop and restart a server
//! around their init scripts, which this provider has none of. Ready is a real login over the published
//! port. Dropping the container removes it; testcontainers' watchdog removes it on SIGINT/SIGTERM/SIGQUIT;
//! the next start removes one whose process died without either (SIGKILL): see [`super::abandoned`].

use std::borrow::Cow;
use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use testcontainers_modules::postgres::Postgres;
use testcontainers_modules::testcontainers::bollard::models::{HostConfig, PortBinding};
use testcontainers_modules::testcontainers::core::client::docker_client_instance;
use testcontainers_modules::testcontainers::core::{ExecCommand, Mount, WaitFor};
use testcontainers_modules::testcontainers::runners::AsyncRunner;
use testcontainers_modules::testcontainers::{
    ContainerAsync, CopyTargetOptions, CopyToContainer, Image, ImageExt,
};

use super::docker::{DOCKER_PROBE_TIMEOUT, LABEL_KEY, LABEL_VALUE, split_image};
use super::{SUPERUSER, abandoned};
use crate::local::tls::RunCertificates;

/// How long the server may take to initialise its cluster and accept TCP connections.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(90);
/// How often a starting server is tried (a refused login costs a millisecond or two).
const READY_POLL: Duration = Duration::from_millis(20);
/// How often a starting server's container is checked for having stopped.
const RUNNING_CHECK: Duration = Duration::from_millis(250);
/// How often a slow start says it is still waiting.
const STARTUP_HEARTBEAT: Duration = Duration::from_secs(10);
/// Where the copied certificate and key land (the start command hands them to `postgres`; it names
/// this directory and [`DATA_DIR`] itself).
const TLS_DIR: &str = "/etc/init-fn-tls";
/// The cluster's directory: a tmpfs (nothing of a throwaway cluster needs a disk, and it is gone with
/// the container), at the path the official image declares a `VOLUME`, so no anonymous volume is made.
const DATA_DIR: &str = "/var/lib/postgresql/data";

/// Where the image's template cluster lives: a named volume per image (see [`template_volume`]).
const TEMPLATE_DIR: &str = "/init-fn-template";

/// The container's `/bin/sh -c` start command, run as root so the copied files can change owner: then,
/// as `postgres`, the cluster: a copy of the image's template cluster (made by the first start, kept in
/// a volume: [`TEMPLATE_DIR`]) whose superuser gets this run's password in single-user mode, or, the
/// first time, `initdb` (password from a file written by the shell's builtin `printf`, never an
/// argument) kept as the template for the next runs. Then the server itself, TLS on, with the settings
/// of a database thrown away at the end (no fsync, no synchronous commit, no full-page writes); `"$@"`:
/// extra server arguments. `gosu` (official image), `setpriv` (Debian) or `su-exec` (Alpine) drops root.
const START_SCRIPT: &str = r#"set -e
tls=/etc/init-fn-tls data=/var/lib/postgresql/data tpl=/init-fn-template
if command -v gosu >/dev/null; then as_postgres="gosu postgres"
elif command -v setpriv >/dev/null; then as_postgres="setpriv --reuid=postgres --regid=postgres --init-groups"
elif command -v su-exec >/dev/null; then as_postgres="su-exec postgres"
else echo "init-fn: the image has neither gosu, setpriv nor su-exec to run postgres as its own user" >&2; exit 1
fi
mkdir -p "$data" /var/run/postgresql
chown postgres "$tls" "$tls/server.crt" "$tls/server.key" "$data" /var/run/postgresql
chmod 700 "$tls" "$data"
chmod 600 "$tls/server.key"
umask 077
if [ -f "$tpl/data/PG_VERSION" ]; then
  cp -a "$tpl/data/." "$data/"
  pw=$(printf '%s' "$POSTGRES_PASSWORD" | sed "s/'/''/g")
  printf 'ALTER ROLE "%s" PASSWORD '"'"'%s'"'"';
' "$POSTGRES_USER" "$pw" |
    $as_postgres postgres --single -D "$data" -c fsync=off -c log_min_messages=warning postgres >/dev/null
  unset pw
else
  printf '%s
' "$POSTGRES_PASSWORD" >"$tls/password"
  chown postgres "$tls/password"
  $as_postgres initdb -D "$data" -U "$POSTGRES_USER" --pwfile="$tls/password"     --auth-local=trust --auth-host=scram-sha-256 --no-sync >/dev/null
  rm -f "$tls/password"
  echo "host all all all scram-sha-256" >>"$data/pg_hba.conf"
  if [ -d "$tpl" ] && [ ! -e "$tpl/data" ]; then
    # Never started, so a plain copy is a whole cluster; renamed into place, so a concurrent start
    # sees all of it or nothing. Best effort: without it, the next start runs initdb again.
    { cp -a "$data" "$tpl/.staging.$$" && mv -T "$tpl/.staging.$$" "$tpl/data"; } 2>/dev/null ||
      rm -rf "$tpl/.staging.$$"
  fi
fi
unset POSTGRES_PASSWORD
exec $as_postgres postgres -D "$data" -c listen_addresses='*' \
  -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c ssl=on \
  -c ssl_cert_file="$tls/server.crt" -c ssl_key_file="$tls/server.key" "$@"
"#;

/// testcontainers-modules' `Postgres` (its environment: user, database, password; its copies) with
/// `/bin/sh` as the entrypoint, which `ImageExt` cannot override.
#[derive(Debug, Clone)]
struct TlsPostgres(Postgres);

impl Image for TlsPostgres {
    fn name(&self) -> &str {
        self.0.name()
    }

    fn tag(&self) -> &str {
        self.0.tag()
    }

    fn ready_conditions(&self) -> Vec<WaitFor> {
        Vec::new() // ours: a login over the published port, see `wait_ready`
    }

    fn env_vars(
        &self,
    ) -> impl IntoIterator<Item = (impl Into<Cow<'_, str>>, impl Into<Cow<'_, str>>)> {
        self.0.env_vars()
    }

    fn copy_to_sources(&self) -> impl IntoIterator<Item = &CopyToContainer> {
        self.0.copy_to_sources()
    }

    fn entrypoint(&self) -> Option<&str> {
        Some("/bin/sh")
    }
}

/// Bollard's ping within [`DOCKER_PROBE_TIMEOUT`].
pub async fn engine_answers() -> bool {
    let ping = async {
        let docker = docker_client_instance().await.ok()?;
        docker.ping().await.ok()
    };
    matches!(
        tokio::time::timeout(DOCKER_PROBE_TIMEOUT, ping).await,
        Ok(Some(_))
    )
}

/// Set on SIGINT/SIGTERM/SIGQUIT once a container runs: from then on testcontainers' watchdog stops and
/// removes it, then ends the process as the signal would. Removing it here as well races the
/// watchdog (its removal then fails and its thread panics), so a drop after a signal waits for it.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);
static WATCHING: AtomicBool = AtomicBool::new(false);
/// How long a drop after a signal leaves the watchdog (Docker's stop allows the server 10 s).
const WATCHDOG_GRACE: Duration = Duration::from_secs(30);

/// Notes the signals the watchdog acts on (once per process).
fn note_signals() {
    use tokio::signal::unix::{SignalKind, signal};
    if WATCHING.swap(true, Ordering::SeqCst) {
        return;
    }
    for kind in [
        SignalKind::interrupt(),
        SignalKind::terminate(),
        SignalKind::quit(),
    ] {
        if let Ok(mut stream) = signal(kind) {
            tokio::spawn(async move {
                if stream.recv().await.is_some() {
                    INTERRUPTED.store(true, Ordering::SeqCst);
                }
            });
        }
    }
}

/// A running container; dropping it removes the container (inside a tokio runtime).
pub struct Container {
    /// `None` once removed.
    inner: Option<ContainerAsync<TlsPostgres>>,
    /// Holds `ca.pem` for the bootstrap (`DB_CA_BUNDLE`).
    _dir: tempfile::TempDir,
    pub port: u16,
    pub password: String,
    pub ca_path: PathBuf,
}

/// Starts a container of `image` with `password` and the run's certificates, and waits until the
/// server accepts TCP connections (after the image's init, which restarts the server once).
/// `extra_args` go to `postgres` after the provider's own settings (`-c name=value`).
pub async fn start(
    image: &str,
    password: String,
    extra_args: &[String],
) -> anyhow::Result<Container> {
    with_heartbeat(image, start_quietly(image, password, extra_args)).await
}

/// Prints a line every [`STARTUP_HEARTBEAT`] until `work` finishes.
async fn with_heartbeat<T>(image: &str, work: impl Future<Output = T>) -> T {
    let started = Instant::now();
    let mut ticker = tokio::time::interval_at(
        tokio::time::Instant::now() + STARTUP_HEARTBEAT,
        STARTUP_HEARTBEAT,
    );
    tokio::pin!(work);
    loop {
        tokio::select! {
            out = &mut work => return out,
            _ = ticker.tick() => eprintln!(
                "postgres: waiting for container {image} to accept connections ({}s)",
                started.elapsed().as_secs()
            ),
        }
    }
}

async fn start_quietly(
    image: &str,
    password: String,
    extra_args: &[String],
) -> anyhow::Result<Container> {
    let (name, tag) = split_image(image)?;
    let docker = docker_client_instance().await.map_err(|e| {
        anyhow::anyhow!(
            "postgres: no Docker engine to talk to ({e}); start Docker or pass --postgres local"
        )
    })?;
    // Never pulled: testcontainers pulls on a missing image, so look first.
    let inspected = match docker.inspect_image(image).await {
        Ok(inspected) => inspected,
        Err(e) => bail!(
            "postgres: image {image} is not present ({}); build it offline with \
             ../shared/ci/offline-postgres-image.sh {image}, or `docker build`/`docker pull {image}`",
            one_line(&e.to_string())
        ),
    };
    abandoned::sweep(&docker).await;
    let template = template_volume(&docker, inspected.id.as_deref()).await;
    let certs = RunCertificates::generate()?;
    let mut cmd = vec![
        "-c".to_string(),
        START_SCRIPT.to_string(),
        "init-fn-postgres".to_string(), // $0 of the start command
    ];
    cmd.extend(extra_args.iter().cloned());
    let postgres = Postgres::default()
        .with_user(SUPERUSER)
        .with_db_name("postgres")
        .with_password(&password);
    let request = TlsPostgres(postgres)
        .with_name(name)
        .with_tag(tag)
        .with_cmd(cmd)
        .with_label(LABEL_KEY, LABEL_VALUE)
        .with_label(abandoned::OWNER_LABEL, abandoned::owner_label())
        .with_mount(Mount::tmpfs_mount(DATA_DIR))
        .with_copy_to(
            CopyTargetOptions::new(format!("{TLS_DIR}/server.crt")).with_mode(0o644),
            certs.server_cert_pem.clone().into_bytes(),
        )
        .with_copy_to(
            CopyTargetOptions::new(format!("{TLS_DIR}/server.key")).with_mode(0o600),
            certs.server_key_pem.clone().into_bytes(),
        )
        // Readiness is ours (a login from here, with the logs on failure), not a log-line match.
        .with_ready_conditions(Vec::new())
        .with_startup_timeout(STARTUP_TIMEOUT)
        .with_host_config_modifier(publish_on_loopback);
    let request = match template {
        Some(volume) => request.with_mount(Mount::volume_mount(volume, TEMPLATE_DIR)),
        None => request,
    };
    note_signals();
    let inner = request.start().await.map_err(|e| {
        anyhow::anyhow!(
            "postgres: start container {image}: {}",
            one_line(&e.to_string())
        )
    })?;
    // From here on, dropping `container` removes it, whatever fails next.
    let dir = tempfile::Builder::new().prefix("init-fn-ca-").tempdir()?;
    let ca_path = dir.path().join("ca.pem");
    let mut container = Container {
        inner: Some(inner),
        _dir: dir,
        port: 0,
        password,
        ca_path,
    };
    std::fs::write(&container.ca_path, &certs.ca_pem)?;
    container.port = container
        .inner()
        .get_host_port_ipv4(5432)
        .await
        .map_err(|e| anyhow::anyhow!("postgres: mapped port of 5432: {e}"))?;
    container.wait_ready(image).await?;
    Ok(container)
}

/// The named volume that holds `image`'s template cluster, `init-fn-pg-template-<image id>` (a rebuilt
/// image gets a new one), made with the project's label; `None` (every start runs `initdb`) when the
/// engine will not make it. `docker volume rm` of it only costs the next start an `initdb`.
async fn template_volume(
    docker: &testcontainers_modules::testcontainers::bollard::Docker,
    image_id: Option<&str>,
) -> Option<String> {
    use testcontainers_modules::testcontainers::bollard::models::VolumeCreateRequest;
    let name = template_volume_name(image_id?)?;
    let request = VolumeCreateRequest {
        name: Some(name.clone()),
        labels: Some(HashMap::from([(
            LABEL_KEY.to_string(),
            TEMPLATE_LABEL_VALUE.to_string(),
        )])),
        ..Default::default()
    };
    docker.create_volume(request).await.ok().map(|_| name)
}

/// `init-fn-pg-template-<first 12 hex digits of the image id>`: the template volume of the image whose id
/// (`sha256:…` or bare) is `image_id`.
pub fn template_volume_name(image_id: &str) -> Option<String> {
    let id = image_id.trim_start_matches("sha256:");
    Some(format!("init-fn-pg-template-{}", id.get(..12)?))
}

/// The label value of template volumes (containers carry [`LABEL_VALUE`]).
pub const TEMPLATE_LABEL_VALUE: &str = "postgres-template";

/// 5432 published on 127.0.0.1 only, on a port Docker picks (never on all interfaces).
fn publish_on_loopback(host: &mut HostConfig) {
    host.publish_all_ports = Some(false);
    host.port_bindings = Some(HashMap::from([(
        "5432/tcp".to_string(),
        Some(vec![PortBinding {
            host_ip: Some("127.0.0.1".to_string()),
            host_port: None,
        }]),
    )]));
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

impl Container {
    fn inner(&self) -> &ContainerAsync<TlsPostgres> {
        self.inner
            .as_ref()
            .expect("the container is removed only by `remove` or drop")
    }

    /// The container's id (for `docker inspect` in tests).
    pub fn id(&self) -> &str {
        self.inner().id()
    }

    /// `cmd` inside the container: exit code, stdout, stderr.
    async fn exec(&self, cmd: Vec<String>) -> anyhow::Result<(i64, Vec<u8>, Vec<u8>)> {
        let mut run = self.inner().exec(ExecCommand::new(cmd)).await?;
        let stdout = run.stdout_to_vec().await?;
        let stderr = run.stderr_to_vec().await?;
        // The streams end when the process does; the exit code can lag a moment behind.
        for _ in 0..100 {
            if let Some(code) = run.exit_code().await? {
                return Ok((code, stdout, stderr));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        bail!("docker exec: no exit code after its output ended")
    }

    /// Logs in over the published port until the server lets the superuser in (the server starts
    /// once, so the first login is the final server), every [`READY_POLL`]; while it does not, checks
    /// every [`RUNNING_CHECK`] that the container still runs.
    async fn wait_ready(&self, image: &str) -> anyhow::Result<()> {
        let started = Instant::now();
        let mut config = tokio_postgres::Config::new();
        config
            .host("127.0.0.1")
            .port(self.port)
            .user(SUPERUSER)
            .password(&self.password)
            .dbname("postgres")
            .connect_timeout(Duration::from_secs(2));
        let mut last_look = Instant::now();
        loop {
            if let Ok((client, connection)) = config.connect(tokio_postgres::NoTls).await {
                drop(client); // a clean goodbye (Terminate), not a reset the server would log
                let _ = connection.await;
                return Ok(());
            }
            // Asking the engine costs it more than a refused login: not on every try.
            if last_look.elapsed() < RUNNING_CHECK {
                tokio::time::sleep(READY_POLL).await;
                continue;
            }
            last_look = Instant::now();
            if !self.inner().is_running().await.unwrap_or(false) {
                let logs = self.logs_tail().await;
                bail!("postgres: container {image} stopped while starting: {logs}");
            }
            if started.elapsed() > STARTUP_TIMEOUT {
                let logs = self.logs_tail().await;
                bail!(
                    "postgres: container {image} did not accept connections within {}s: {logs}",
                    STARTUP_TIMEOUT.as_secs()
                );
            }
            tokio::time::sleep(READY_POLL).await;
        }
    }

    /// The last lines the container printed, joined with ` | `, for an error message.
    async fn logs_tail(&self) -> String {
        let stderr = self.inner().stderr_to_vec().await.unwrap_or_default();
        let stdout = self.inner().stdout_to_vec().await.unwrap_or_default();
        let text = if stderr.iter().any(|b| !b.is_ascii_whitespace()) {
            stderr
        } else {
            stdout
        };
        let text = String::from_utf8_lossy(&text);
        let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        let tail = &lines[lines.len().saturating_sub(5)..];
        if tail.is_empty() {
            "(the container printed nothing)".to_string()
        } else {
            tail.join(" | ")
        }
    }

    /// `pg_dump <args> -d <db>` inside the container as the superuser, over the local socket (trusted
    /// there: no password).
    pub async fn pg_dump(&self, args: &[String], db: &str) -> anyhow::Result<String> {
        let mut cmd = vec![
            "pg_dump".to_string(),
            "-U".to_string(),
            SUPERUSER.to_string(),
        ];
        cmd.extend(args.iter().cloned());
        cmd.extend(["-d".to_string(), db.to_string()]);
        let (code, stdout, stderr) = self
            .exec(cmd)
            .await
            .context("postgres: pg_dump in the container")?;
        if code != 0 {
            bail!(
                "postgres: pg_dump in the container exited with {code}: {}",
                one_line(&String::from_utf8_lossy(&stderr))
            );
        }
        String::from_utf8(stdout).context("postgres: pg_dump printed something that is not UTF-8")
    }

    /// Removes the container now (dropping it does the same).
    pub async fn remove(mut self) -> anyhow::Result<()> {
        if INTERRUPTED.load(Ordering::SeqCst) {
            return Ok(()); // the watchdog's to remove (the drop waits for it)
        }
        let inner = self.inner.take().expect("not removed yet");
        inner
            .rm()
            .await
            .map_err(|e| anyhow::anyhow!("postgres: remove container: {e}"))
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        if self.inner.is_some() && INTERRUPTED.load(Ordering::SeqCst) {
            // The watchdog removes the container and ends the process; should it not within the
            // grace period, the inner drop after this removes the container itself.
            std::thread::sleep(WATCHDOG_GRACE);
        }
    }
}
