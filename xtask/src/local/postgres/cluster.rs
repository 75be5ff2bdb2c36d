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
    pub port: u16,
    pub password: String,
    pub ca_path: PathBuf,
}

impl Cluster {
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

/// `initdb` a cluster with the superuser's `password` and the run's certificates, then start it.
pub async fn start(password: String) -> anyhow::Result<Cluster> {
    tokio::task::spawn_blocking(move || start_blocking(password)).await?
}

fn start_blocking(password: String) -> anyhow::Result<Cluster> {
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

    let mut cluster = Cluster {
        bin_dir,
        as_postgres,
        dir,
        port: 0,
        password,
        ca_path,
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

fn append(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .with_context(|| format!("open {}", path.display()))?;
    f.write_all(text.as_bytes())?;
    Ok(())
}
