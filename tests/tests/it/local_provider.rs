//! The local PostgreSQL provider (this machine's server binaries): each run's cluster is a copy of a
//! template made once, whose superuser then takes only that run's password; a template damaged since
//! it was made is replaced; and what a killed run leaves (its directory, a server still running there)
//! is removed by the next start.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use xtask::local::postgres::{PgChoice, PgServer};

/// A login as the superuser with `password` over TCP: `Ok(())`, or the server's SQLSTATE.
async fn login(server: &PgServer, password: &str) -> Result<(), String> {
    let mut config = tokio_postgres::Config::new();
    config
        .host("127.0.0.1")
        .port(server.port())
        .user(server.user())
        .password(password)
        .dbname("postgres")
        .connect_timeout(Duration::from_secs(10));
    match config.connect(tokio_postgres::NoTls).await {
        Ok((client, connection)) => {
            drop(client);
            let _ = connection.await;
            Ok(())
        }
        Err(e) => Err(e
            .code()
            .map_or_else(|| e.to_string(), |c| c.code().to_string())),
    }
}

/// Two clusters started one after the other (the second is surely a template's copy) each let in
/// their own password and refuse the other's.
pub async fn each_server_takes_only_its_own_password(choice: &PgChoice) -> anyhow::Result<()> {
    let a = PgServer::start(choice).await?;
    let b = PgServer::start(choice).await?;
    assert_ne!(a.password(), b.password());
    assert_eq!(login(&a, a.password()).await, Ok(()));
    assert_eq!(login(&b, b.password()).await, Ok(()));
    assert_eq!(login(&b, a.password()).await, Err("28P01".to_string()));
    assert_eq!(login(&a, b.password()).await, Err("28P01".to_string()));
    assert!(login(&b, "").await.is_err());
    a.stop().await?;
    b.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_local_cluster_takes_only_its_own_password() -> anyhow::Result<()> {
    each_server_takes_only_its_own_password(&PgChoice::Local).await
}

/// `target/init-fn-pg/template-*`: the templates of this machine's server builds.
fn templates() -> anyhow::Result<Vec<PathBuf>> {
    let dir = xtask::build::target_dir().join("init-fn-pg");
    Ok(std::fs::read_dir(&dir)
        .with_context(|| format!("read {}", dir.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("template-"))
        })
        .collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_template_is_replaced_and_the_cluster_starts() -> anyhow::Result<()> {
    // A start makes the template when there is none.
    PgServer::start(&PgChoice::Local).await?.stop().await?;
    let template = templates()?
        .into_iter()
        .find(|t| t.join("PG_VERSION").is_file())
        .context("no template cluster after a start")?;
    // What a cleaner of old files could leave: the control file gone.
    std::fs::remove_file(template.join("global/pg_control"))?;

    let server = PgServer::start(&PgChoice::Local).await?;
    let client = server.client("postgres").await?;
    let one: i32 = client.query_one("SELECT 1", &[]).await?.get(0);
    assert_eq!(one, 1);
    drop(client);
    server.stop().await?;
    assert!(
        template.join("global/pg_control").is_file(),
        "the damaged template was replaced by a whole one: {}",
        template.display()
    );
    Ok(())
}

/// The run directory of the local cluster listening on `port` (its `postgresql.conf` says so).
fn run_dir_of(port: u16) -> Option<PathBuf> {
    let needle = format!("port = {port}\n");
    ["/dev/shm".into(), std::env::temp_dir()]
        .iter()
        .flat_map(|base: &PathBuf| std::fs::read_dir(base).into_iter().flatten().flatten())
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("init-fn-pg-"))
        })
        .find(|p| {
            std::fs::read_to_string(p.join("data/postgresql.conf"))
                .is_ok_and(|conf| conf.contains(&needle))
        })
}

fn listening(port: u16) -> bool {
    std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
}

fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) -> anyhow::Result<()> {
    let until = Instant::now() + limit;
    while !done() {
        if Instant::now() > until {
            bail!("{what}: not within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_next_start_removes_what_a_killed_run_left() -> anyhow::Result<()> {
    // `test-local --postgres local`, killed (SIGKILL: no drop, no handler) once its server is up.
    // The bootstrap is built first, so the run goes straight to its server.
    xtask::test_local::build_bootstrap(xtask::test_local::Profile::Local)?;
    let sh = xshell::Shell::new()?;
    sh.change_dir(xtask::project_root());
    let cargo = xtask::cargo();
    xtask::without_package_env(xshell::cmd!(sh, "{cargo} build -q -p xtask --bin xtask")).run()?;
    let mut child = Command::new(xtask::build::target_dir().join("debug/xtask"))
        .args(["test-local", "--postgres", "local", "--no-build"])
        .current_dir(xtask::project_root())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    let stdout = child.stdout.take().context("stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    // "[  1.23s] postgres: local on localhost:PORT (…)"
    let port: u16 = loop {
        let line = lines
            .next()
            .context("test-local ended before its postgres was up")??;
        if let Some(rest) = line.split("postgres: local on localhost:").nth(1) {
            break rest.split_whitespace().next().unwrap_or("").parse()?;
        }
    };
    child.kill()?;
    child.wait()?;
    let dir = run_dir_of(port).context("the killed run's cluster directory")?;
    assert!(listening(port), "the killed run's server still runs");

    let server = PgServer::start(&PgChoice::Local).await?;
    assert!(!dir.exists(), "{} is still there", dir.display());
    wait_until(
        "the abandoned server stops",
        Duration::from_secs(10),
        || !listening(port),
    )?;
    server.stop().await
}
