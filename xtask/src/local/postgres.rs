//! Postgres providers for local runs and tests: a testcontainers container, a temporary cluster from
//! the local PostgreSQL binaries, or an existing server given by URL. Docker and local servers get a
//! per-run CA and a `localhost` server certificate, so `verify-full` is exercised like against RDS.

use std::borrow::Cow;
use std::collections::HashMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::str::FromStr;
use std::time::Duration;

use anyhow::{Context, bail};
use testcontainers_modules::postgres::Postgres;
use testcontainers_modules::testcontainers::core::{ExecCommand, WaitFor};
use testcontainers_modules::testcontainers::runners::AsyncRunner;
use testcontainers_modules::testcontainers::{ContainerAsync, Image, ImageExt};

use super::tls::{RunCertificates, SERVER_NAME};

/// The superuser every provider hands out (`POSTGRES_USER` of the image, `initdb -U`).
const SUPERUSER: &str = "postgres";
/// The ledger is the engine's bookkeeping, not part of the schema being compared.
const LEDGER_TABLE: &str = "public._init_fn_migrations";
/// How long `docker info` may take before Docker counts as "not answering".
const DOCKER_PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// Which Postgres server to run against (`--postgres auto|docker|local|URL`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PgChoice {
    /// Docker when an engine answers, else local binaries, else an error naming both ways.
    Auto,
    /// A testcontainers container of `image` (`name:tag`).
    Docker { image: String },
    /// A temporary cluster from the PostgreSQL server binaries on this machine.
    Local,
    /// An existing server, used as is (`postgres://user:password@host:port/db`).
    Url(String),
}

/// The image `docker` uses unless `--image` says otherwise.
pub const DEFAULT_IMAGE: &str = "postgres:17";

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
    Docker {
        container: Box<ContainerAsync<TlsPostgres>>,
        /// Holds `ca.pem` for the bootstrap (`DB_CA_BUNDLE`).
        _dir: tempfile::TempDir,
    },
    Local(LocalCluster),
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
                        "postgres auto: no Docker engine answers `docker info` within {}s, and under CI \
                         auto does not fall back; start Docker or pass --postgres local",
                        DOCKER_PROBE_TIMEOUT.as_secs()
                    );
                }
                if local_bin_dir().is_ok() {
                    return start_local().await;
                }
                bail!(
                    "postgres auto: no Docker engine answers `docker info` and no PostgreSQL server \
                     binaries (initdb, pg_ctl, postgres) are on PATH or in /usr/lib/postgresql/*/bin; \
                     start Docker, install the PostgreSQL server package, or pass --postgres postgres://…"
                )
            }
        }
    }

    /// `"docker"`, `"local"` or `"url"`.
    pub fn kind(&self) -> &'static str {
        match self.backend {
            Backend::Docker { .. } => "docker",
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
        let mut args: Vec<String> = [
            "--schema-only",
            "--schema=public",
            &format!("--exclude-table={LEDGER_TABLE}"),
            "--no-owner",
            "--no-privileges",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let raw = match &self.backend {
            Backend::Docker { container, .. } => {
                // The server's own pg_dump: a host pg_dump older than the server refuses to dump it.
                let mut cmd = vec!["pg_dump".to_string(), "-U".into(), SUPERUSER.into()];
                cmd.append(&mut args);
                cmd.extend(["-d".to_string(), db.to_string()]);
                let mut exec = container
                    .exec(ExecCommand::new(cmd))
                    .await
                    .context("postgres: docker exec pg_dump")?;
                let stdout = exec.stdout_to_vec().await?;
                let stderr = exec.stderr_to_vec().await?;
                let code = exec_exit_code(&exec).await?;
                if code != 0 {
                    bail!(
                        "postgres: pg_dump in the container exited with {code}: {}",
                        String::from_utf8_lossy(&stderr).trim()
                    );
                }
                String::from_utf8(stdout).context("postgres: pg_dump output is not UTF-8")?
            }
            Backend::Local(cluster) => {
                let mut cmd = tokio::process::Command::new(cluster.bin_dir.join("pg_dump"));
                cmd.arg("-h")
                    .arg(cluster.dir.path())
                    .arg("-p")
                    .arg(self.port.to_string())
                    .arg("-U")
                    .arg(SUPERUSER)
                    .args(&args)
                    .arg("-d")
                    .arg(db);
                run_capture(cmd, "pg_dump").await?
            }
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
                run_capture(cmd, "pg_dump").await?
            }
        };
        Ok(normalize_dump(&raw))
    }

    /// Stop the server now (the same as dropping it, but awaits container removal).
    pub async fn stop(self) -> anyhow::Result<()> {
        let PgServer { backend, .. } = self;
        match backend {
            Backend::Docker { container, _dir } => {
                container.rm().await.context("postgres: remove container")?;
            }
            Backend::Local(cluster) => drop(cluster),
            Backend::Url => {}
        }
        Ok(())
    }
}

/// Drop what differs between runs and versions of pg_dump but not between schemas.
pub fn normalize_dump(raw: &str) -> String {
    let mut out = String::new();
    for line in raw.lines() {
        let trimmed = line.trim_end();
        if trimmed.is_empty()
            || trimmed.starts_with("--")
            || trimmed.starts_with("SET ")
            || trimmed.starts_with("SELECT pg_catalog.set_config")
            || trimmed.starts_with("\\restrict")
            || trimmed.starts_with("\\unrestrict")
        {
            continue;
        }
        out.push_str(trimmed);
        out.push('\n');
    }
    out
}

fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn random_password() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

async fn exec_exit_code(
    exec: &testcontainers_modules::testcontainers::core::ExecResult,
) -> anyhow::Result<i64> {
    // Output streams end just before Docker records the exit code.
    for _ in 0..500 {
        if let Some(code) = exec.exit_code().await? {
            return Ok(code);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    bail!("postgres: docker exec did not report an exit code")
}

async fn run_capture(mut cmd: tokio::process::Command, what: &str) -> anyhow::Result<String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .await
        .with_context(|| format!("postgres: run {what}"))?;
    if !out.status.success() {
        bail!(
            "postgres: {what} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    String::from_utf8(out.stdout).with_context(|| format!("postgres: {what} output is not UTF-8"))
}

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

// ---------------------------------------------------------------------------------------------
// docker

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

async fn start_docker(image: &str) -> anyhow::Result<PgServer> {
    let (name, tag) = split_image(image)?;
    let certs = RunCertificates::generate()?;
    let password = random_password();
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
    Ok(PgServer {
        backend: Backend::Docker {
            container: Box::new(container),
            _dir: dir,
        },
        host: SERVER_NAME.to_string(),
        port,
        user: SUPERUSER.to_string(),
        password,
        ca_bundle: Some(ca_path),
        sslmode: "verify-full".to_string(),
    })
}

// ---------------------------------------------------------------------------------------------
// local

/// A temporary cluster; `Drop` stops it (`pg_ctl -m immediate`) and deletes its directory.
struct LocalCluster {
    bin_dir: PathBuf,
    /// Run the server binaries as `postgres` (initdb refuses root).
    as_postgres: bool,
    dir: tempfile::TempDir,
}

impl LocalCluster {
    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn command(&self, program: &str) -> std::process::Command {
        let path = self.bin_dir.join(program);
        let mut cmd = if self.as_postgres {
            let mut cmd = std::process::Command::new("runuser");
            cmd.args(["-u", SUPERUSER, "--"]).arg(path);
            cmd
        } else {
            std::process::Command::new(path)
        };
        // The postgres user may not be able to enter the caller's working directory.
        cmd.current_dir(self.dir.path()).stdin(Stdio::null());
        cmd
    }

    fn run(&self, mut cmd: std::process::Command, what: &str) -> anyhow::Result<()> {
        let out = cmd
            .output()
            .with_context(|| format!("postgres local: run {what}"))?;
        if !out.status.success() {
            let log =
                std::fs::read_to_string(self.dir.path().join("postgres.log")).unwrap_or_default();
            bail!(
                "postgres local: {what} failed ({}): {}{}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout).trim(),
                String::from_utf8_lossy(&out.stderr).trim(),
                if log.is_empty() {
                    String::new()
                } else {
                    format!("\nserver log:\n{log}")
                }
            );
        }
        Ok(())
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        let mut stop = self.command("pg_ctl");
        stop.arg("-D")
            .arg(self.data_dir())
            .args(["-m", "immediate", "-w", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let _ = stop.status();
    }
}

/// The directory holding `initdb`, `pg_ctl`, `postgres` and `pg_dump`: from PATH (symlinks
/// resolved, so the Debian wrappers lead to the real directory), else the newest
/// `/usr/lib/postgresql/*/bin`.
pub fn local_bin_dir() -> anyhow::Result<PathBuf> {
    let complete = |dir: &Path| {
        ["initdb", "pg_ctl", "postgres", "pg_dump"]
            .iter()
            .all(|p| dir.join(p).is_file())
    };
    if let Some(path) = std::env::var_os("PATH") {
        for entry in std::env::split_paths(&path) {
            let candidate = entry.join("pg_ctl");
            if let Ok(real) = std::fs::canonicalize(&candidate)
                && let Some(dir) = real.parent()
                && complete(dir)
            {
                return Ok(dir.to_path_buf());
            }
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let major = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            complete(&bin).then_some((major, bin))
        })
        .collect();
    versions.sort();
    match versions.pop() {
        Some((_, bin)) => Ok(bin),
        None => bail!(
            "no PostgreSQL server binaries (initdb, pg_ctl, postgres, pg_dump) on PATH or in \
             /usr/lib/postgresql/*/bin; install the PostgreSQL server package"
        ),
    }
}

fn is_root() -> bool {
    std::fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

/// uid and gid of `user` from /etc/passwd.
fn passwd_ids(user: &str) -> anyhow::Result<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd").context("read /etc/passwd")?;
    for line in passwd.lines() {
        let fields: Vec<&str> = line.split(':').collect();
        if fields.len() > 3 && fields[0] == user {
            return Ok((fields[2].parse()?, fields[3].parse()?));
        }
    }
    bail!(
        "postgres local: running as root, and initdb refuses root, but there is no `{user}` user \
         to run the cluster as; create one (e.g. install the PostgreSQL server package)"
    )
}

fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

async fn start_local() -> anyhow::Result<PgServer> {
    tokio::task::spawn_blocking(start_local_blocking).await?
}

fn start_local_blocking() -> anyhow::Result<PgServer> {
    let bin_dir = local_bin_dir()?;
    let as_postgres = is_root();
    let owner = if as_postgres {
        Some(passwd_ids(SUPERUSER)?)
    } else {
        None
    };
    let dir = tempfile::Builder::new().prefix("init-fn-pg-").tempdir()?;
    let root = dir.path().to_path_buf();
    let chown = |path: &Path| -> anyhow::Result<()> {
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(path, Some(uid), Some(gid))
                .with_context(|| format!("chown {}", path.display()))?;
        }
        Ok(())
    };
    chown(&root)?;

    let certs = RunCertificates::generate()?;
    let password = random_password();
    let tls_dir = root.join("tls");
    std::fs::create_dir(&tls_dir)?;
    let cert_path = tls_dir.join("server.crt");
    let key_path = tls_dir.join("server.key");
    let ca_path = root.join("ca.pem");
    let pwfile = root.join("pwfile");
    std::fs::write(&cert_path, &certs.server_cert_pem)?;
    std::fs::write(&key_path, &certs.server_key_pem)?;
    std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o600))?;
    std::fs::write(&ca_path, &certs.ca_pem)?;
    std::fs::set_permissions(&ca_path, std::fs::Permissions::from_mode(0o644))?;
    std::fs::write(&pwfile, &password)?;
    std::fs::set_permissions(&pwfile, std::fs::Permissions::from_mode(0o600))?;
    for path in [&tls_dir, &cert_path, &key_path, &pwfile] {
        chown(path)?;
    }

    let cluster = LocalCluster {
        bin_dir,
        as_postgres,
        dir,
    };
    let data = cluster.data_dir();
    let mut initdb = cluster.command("initdb");
    initdb
        .arg("-D")
        .arg(&data)
        .args(["-U", SUPERUSER, "-E", "UTF8", "--locale=C", "--no-sync"])
        .arg(format!("--pwfile={}", pwfile.display()))
        .args(["--auth-local=trust", "--auth-host=scram-sha-256"]);
    cluster.run(initdb, "initdb")?;
    std::fs::remove_file(&pwfile)?;

    let port = free_port()?;
    let conf = format!(
        "\n# init-fn test cluster\n\
         listen_addresses = '127.0.0.1'\n\
         port = {port}\n\
         unix_socket_directories = '{root}'\n\
         ssl = on\n\
         ssl_cert_file = '{cert}'\n\
         ssl_key_file = '{key}'\n\
         fsync = off\n\
         synchronous_commit = off\n\
         full_page_writes = off\n",
        root = root.display(),
        cert = cert_path.display(),
        key = key_path.display(),
    );
    append(&data.join("postgresql.conf"), &conf)?;
    let hba = "local all all trust\n\
               hostssl all all 127.0.0.1/32 scram-sha-256\n\
               host all all 127.0.0.1/32 scram-sha-256\n";
    std::fs::write(data.join("pg_hba.conf"), hba)?;
    chown(&data.join("pg_hba.conf"))?;

    let log = root.join("postgres.log");
    std::fs::write(&log, "")?;
    chown(&log)?;
    let mut start = cluster.command("pg_ctl");
    start
        .arg("-D")
        .arg(&data)
        .arg("-l")
        .arg(&log)
        .args(["-w", "-t", "60", "start"]);
    cluster.run(start, "pg_ctl start")?;

    Ok(PgServer {
        backend: Backend::Local(cluster),
        host: SERVER_NAME.to_string(),
        port,
        user: SUPERUSER.to_string(),
        password,
        ca_bundle: Some(ca_path),
        sslmode: "verify-full".to_string(),
    })
}

fn append(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .with_context(|| format!("open {}", path.display()))?;
    f.write_all(text.as_bytes())?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// url

async fn start_url(url: &str) -> anyhow::Result<PgServer> {
    let (url, sslmode, sslrootcert) = split_tls_params(url);
    // The URL may hold a password: never put it in an error message.
    let config: tokio_postgres::Config = url
        .parse()
        .map_err(|_| anyhow::anyhow!("postgres: --postgres is not a valid postgres:// URL"))?;
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        _ => bail!("postgres: the URL needs a TCP host"),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let user = config.get_user().unwrap_or(SUPERUSER).to_string();
    // Without a password in the URL, libpq's PGPASSWORD (keeps it out of the command line).
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
    let server = PgServer {
        backend: Backend::Url,
        host,
        port,
        user,
        password,
        ca_bundle,
        sslmode,
    };
    server
        .client("postgres")
        .await
        .context("postgres: the server given by URL does not accept a connection")?;
    Ok(server)
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

    #[test]
    fn normalizes_dumps() {
        let raw = "--\n-- PostgreSQL database dump\n--\n\\restrict abc\nSET x = 1;\n\
                   SELECT pg_catalog.set_config('search_path', '', false);\n\n\
                   CREATE TABLE public.t (\n    id integer\n);\n\n\\unrestrict abc\n";
        assert_eq!(
            normalize_dump(raw),
            "CREATE TABLE public.t (\n    id integer\n);\n"
        );
    }
}
