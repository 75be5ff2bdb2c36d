//! A temporary Postgres cluster from this machine's server binaries (`initdb`, `pg_ctl`): TLS on,
//! listening on 127.0.0.1 only, run as `postgres` when we are root (initdb refuses root), stopped
//! and deleted on drop.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::{Context, bail};

use super::SUPERUSER;
use crate::local::tls::RunCertificates;

/// A running temporary cluster; `Drop` stops it (`pg_ctl -m immediate`) and deletes its directory.
pub struct Cluster {
    bin_dir: PathBuf,
    /// Run the server binaries as `postgres` (initdb refuses root).
    as_postgres: bool,
    dir: tempfile::TempDir,
    /// Locked while this process lives (`owner.lock`): a directory whose lock is free was left by a
    /// run that ended without its drop (Ctrl-C, a kill), and the next start removes it.
    _owner: std::fs::File,
    pub port: u16,
    pub password: String,
    pub ca_path: PathBuf,
}

impl Cluster {
    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn command(&self, program: &str) -> std::process::Command {
        server_command(&self.bin_dir, self.as_postgres, program, self.dir.path())
    }

    fn run(&self, mut cmd: std::process::Command, what: &str) -> anyhow::Result<()> {
        let out = cmd
            .output()
            .with_context(|| format!("postgres local: run {what}"))?;
        if !out.status.success() {
            let log =
                std::fs::read_to_string(self.dir.path().join("postgres.log")).unwrap_or_default();
            bail!(
                "postgres local: {what} failed ({}): {} {}{}",
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

    /// `pg_dump <args> -d <db>` over the cluster's Unix socket, as the superuser.
    pub fn pg_dump(&self, args: &[String], db: &str) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(self.bin_dir.join("pg_dump"));
        cmd.arg("-h")
            .arg(self.dir.path())
            .arg("-p")
            .arg(self.port.to_string())
            .arg("-U")
            .arg(SUPERUSER)
            .args(args)
            .arg("-d")
            .arg(db);
        cmd
    }
}

impl Drop for Cluster {
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

/// A cluster with the superuser's `password` and the run's certificates, started. Its data directory is a
/// copy of a template cluster (`initdb` once per server build, kept in `target/init-fn-pg/`) on a tmpfs
/// (`/dev/shm`) when the machine has one: `initdb` is most of a start, and a copy in memory is a tenth
/// of it. The password is set over the cluster's Unix socket once it runs (never an argument).
pub async fn start(password: String) -> anyhow::Result<Cluster> {
    let cluster = tokio::task::spawn_blocking(move || start_blocking(password)).await??;
    cluster.set_password().await?;
    Ok(cluster)
}

/// Where run clusters live: a tmpfs when there is one we can write (a throwaway cluster needs no
/// disk), else the system's temporary directory.
fn run_dir_base() -> PathBuf {
    let shm = Path::new("/dev/shm");
    let writable = std::fs::metadata(shm)
        .map(|m| m.is_dir() && m.permissions().mode() & 0o002 != 0)
        .unwrap_or(false);
    if writable {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    }
}

/// The template cluster for these server binaries: `target/init-fn-pg/template-<size>-<mtime>` of the
/// `postgres` binary (a new server build gets a new template), plus the layout's version.
fn template_path(bin_dir: &Path) -> anyhow::Result<PathBuf> {
    let meta = std::fs::metadata(bin_dir.join("postgres")).with_context(|| {
        format!(
            "postgres local: stat {}",
            bin_dir.join("postgres").display()
        )
    })?;
    Ok(crate::build::target_dir().join("init-fn-pg").join(format!(
        "template-v1-{}-{}",
        meta.size(),
        meta.mtime()
    )))
}

fn copy_tree(from: &Path, to: &Path) -> anyhow::Result<()> {
    // `cp -a`: modes and (as root) owners as they are, which the server checks.
    let out = std::process::Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .stdin(Stdio::null())
        .output()
        .context("postgres local: run cp")?;
    if !out.status.success() {
        bail!(
            "postgres local: cp -a {} {} failed: {}",
            from.display(),
            to.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

fn start_blocking(password: String) -> anyhow::Result<Cluster> {
    let bin_dir = local_bin_dir()?;
    let template = template_path(&bin_dir)?;
    let from_template = template.join("PG_VERSION").is_file();
    match start_from(&bin_dir, &template, password.clone()) {
        Err(e) if from_template => {
            // A template damaged since it was made (a cleaner removing old files from target/, say):
            // throw it away and make a new one once.
            let why = format!("{e:#}");
            let why = why.split_whitespace().collect::<Vec<_>>().join(" ");
            let why: String = why.chars().take(300).collect();
            eprintln!(
                "postgres local: a cluster copied from {} did not start ({why}); making a new template",
                template.display()
            );
            // Another start may have removed it (or made a new one) meanwhile: either is fine.
            if let Err(e) = std::fs::remove_dir_all(&template)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                return Err(e).with_context(|| format!("remove {}", template.display()));
            }
            start_from(&bin_dir, &template, password)
        }
        other => other,
    }
}

fn start_from(bin_dir: &Path, template: &Path, password: String) -> anyhow::Result<Cluster> {
    let as_postgres = is_root();
    let owner = if as_postgres {
        Some(passwd_ids(SUPERUSER)?)
    } else {
        None
    };
    let base = run_dir_base();
    sweep_abandoned(&base, bin_dir, owner.is_some());
    let dir = tempfile::Builder::new()
        .prefix(RUN_DIR_PREFIX)
        .tempdir_in(&base)?;
    let root = dir.path().to_path_buf();
    // Locked before it has its name, so a sweep never sees an `owner.lock` nobody holds yet.
    let staging = root.join(".owner.lock");
    let owner_lock = std::fs::File::create(&staging)?;
    owner_lock.lock()?;
    std::fs::rename(&staging, root.join(OWNER_LOCK))?;
    let chown = |path: &Path| -> anyhow::Result<()> {
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(path, Some(uid), Some(gid))
                .with_context(|| format!("chown {}", path.display()))?;
        }
        Ok(())
    };
    chown(&root)?;

    let certs = RunCertificates::generate()?;
    let tls_dir = root.join("tls");
    std::fs::create_dir(&tls_dir)?;
    let cert_path = tls_dir.join("server.crt");
    let key_path = tls_dir.join("server.key");
    let ca_path = root.join("ca.pem");
    std::fs::write(&cert_path, &certs.server_cert_pem)?;
    std::fs::write(&key_path, &certs.server_key_pem)?;
    std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o600))?;
    std::fs::write(&ca_path, &certs.ca_pem)?;
    std::fs::set_permissions(&ca_path, std::fs::Permissions::from_mode(0o644))?;
    for path in [&tls_dir, &cert_path, &key_path] {
        chown(path)?;
    }

    let mut cluster = Cluster {
        bin_dir: bin_dir.to_path_buf(),
        as_postgres,
        dir,
        _owner: owner_lock,
        port: 0,
        password,
        ca_path,
    };
    let data = cluster.data_dir();
    if template.join("PG_VERSION").is_file() {
        copy_tree(template, &data)?;
    } else {
        // No password and trust everywhere: the template is only ever copied; each run writes its
        // own pg_hba.conf and sets its own password.
        let mut initdb = cluster.command("initdb");
        initdb
            .arg("-D")
            .arg(&data)
            .args(["-U", SUPERUSER, "-E", "UTF8", "--locale=C", "--no-sync"])
            .args(["--auth=trust", "--no-instructions"]);
        cluster.run(initdb, "initdb")?;
        save_template(&data, template);
    }

    let port = free_port()?;
    cluster.port = port;
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
    Ok(cluster)
}

/// `program` from the server's `bin_dir`, run as `postgres` when we are root (initdb and the server
/// refuse root), in `cwd` (the postgres user may not be able to enter the caller's working directory),
/// with no stdin.
fn server_command(
    bin_dir: &Path,
    as_postgres: bool,
    program: &str,
    cwd: &Path,
) -> std::process::Command {
    let path = bin_dir.join(program);
    let mut cmd = if as_postgres {
        let mut cmd = std::process::Command::new("runuser");
        cmd.args(["-u", SUPERUSER, "--"]).arg(path);
        cmd
    } else {
        std::process::Command::new(path)
    };
    cmd.current_dir(cwd).stdin(Stdio::null());
    cmd
}

const RUN_DIR_PREFIX: &str = "init-fn-pg-";
const OWNER_LOCK: &str = "owner.lock";

/// Removes the run directories in `base` whose owner is gone (their `owner.lock` can be locked), after
/// stopping a server still running there: what a run stopped by Ctrl-C or a kill left behind.
fn sweep_abandoned(base: &Path, bin_dir: &Path, as_postgres: bool) {
    let Ok(entries) = std::fs::read_dir(base) else {
        return;
    };
    for entry in entries.flatten() {
        let dir = entry.path();
        let ours = entry
            .file_name()
            .to_str()
            .is_some_and(|n| n.starts_with(RUN_DIR_PREFIX));
        if !ours {
            continue;
        }
        let Ok(lock) = std::fs::File::open(dir.join(OWNER_LOCK)) else {
            continue; // not ours, or a start before it has its lock
        };
        if lock.try_lock().is_err() {
            continue; // its run is alive
        }
        let data = dir.join("data");
        if data.join("postmaster.pid").exists() {
            let _ = server_command(bin_dir, as_postgres, "pg_ctl", &dir)
                .arg("-D")
                .arg(&data)
                .args(["-m", "immediate", "-w", "stop"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// Keeps a just-made, never-started cluster as the template: copied beside it, then renamed into
/// place, so a concurrent start sees a whole template or none. Best effort: a run without one only
/// pays `initdb` again.
fn save_template(data: &Path, template: &Path) {
    let Some(parent) = template.parent() else {
        return;
    };
    if std::fs::create_dir_all(parent).is_err() {
        return;
    }
    let staging = parent.join(format!(".staging-{}-{}", std::process::id(), unique()));
    if copy_tree(data, &staging).is_err() || std::fs::rename(&staging, template).is_err() {
        let _ = std::fs::remove_dir_all(&staging);
    }
}

fn unique() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default()
}

impl Cluster {
    /// `ALTER ROLE … PASSWORD` over the Unix socket (trust there), so TCP logins need the run's password.
    async fn set_password(&self) -> anyhow::Result<()> {
        let mut config = tokio_postgres::Config::new();
        config
            .host_path(self.dir.path())
            .port(self.port)
            .user(SUPERUSER)
            .dbname("postgres");
        let (client, connection) = config
            .connect(tokio_postgres::NoTls)
            .await
            .context("postgres local: connect over the Unix socket to set the password")?;
        let task = tokio::spawn(connection);
        let sql = format!(
            "ALTER ROLE {SUPERUSER} PASSWORD '{}'",
            self.password.replace('\'', "''")
        );
        let result = client.batch_execute(&sql).await;
        drop(client);
        let _ = task.await;
        result.context("postgres local: set the superuser's password")
    }
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
