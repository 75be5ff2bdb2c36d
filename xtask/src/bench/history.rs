//! `cargo xtask bench --history [PROJECT]`: a real migration history (`tests/fixtures/histories/`,
//! the largest by default) applied by a cold bootstrap that embeds it, against `psql -f` of each of
//! its files in a session of its own (how a user applies them by hand): both on fresh databases over
//! TLS, the median wall time of each and their ratio.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use serde_json::json;
use xshell::{Shell, cmd};

use super::psql_file;
use super::series::{Series, cold_run, print_table, ratio};
use crate::local::postgres::{PgChoice, PgServer};
use crate::local::secrets_manager::SecretsManager;
use crate::test_local::{Profile, SECRET_ID};

/// Where the histories live, relative to the project root.
const HISTORIES: &str = "tests/fixtures/histories";

pub fn run(choice: &PgChoice, runs: usize, project: Option<&str>) -> anyhow::Result<()> {
    let dir = match project {
        Some(p) => crate::project_root().join(HISTORIES).join(p),
        None => largest()?,
    };
    let files = crate::schema::migration_files(&dir)?;
    anyhow::ensure!(
        !files.is_empty(),
        "bench --history: no NNNN_name.sql in {}",
        dir.display()
    );
    let name = dir
        .file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned();
    eprintln!(
        "build: bootstrap embedding {name} ({} files, profile local, INIT_FN_SQL_DIR)",
        files.len()
    );
    let bootstrap = build_with(&dir, &name)?;
    // Leave the ordinary local build in place for the next test-local.
    crate::test_local::build_bootstrap(Profile::Local)?;

    crate::runtime()?.block_on(async move {
        let server = PgServer::start(choice).await?;
        let version = server.server_version().await.unwrap_or_default();
        println!(
            "bench --history: {name}, {} files, {runs} runs each, fresh databases, {} PostgreSQL {version}, sslmode={}",
            files.len(),
            server.kind(),
            server.sslmode()
        );
        let result = measure(&server, &bootstrap, &files, runs).await;
        server.stop().await?;
        let (engine, psql) = result?;
        print_table(40, &[&engine, &psql]);
        println!(
            "ratio engine / psql -f per file: {:.2}x",
            ratio(&engine, &psql)
        );
        Ok(())
    })
}

async fn measure(
    server: &PgServer,
    bootstrap: &Path,
    files: &[PathBuf],
    runs: usize,
) -> anyhow::Result<(Series, Series)> {
    let secrets = SecretsManager::start().await?;
    secrets.put(SECRET_ID, server.password());
    let mut engine = Series::new("init-fn apply (cold), fresh db");
    let mut psql = Series::new("psql -f each file, fresh db");
    for i in 0..runs {
        let db = format!("bench_history_fn_{i}");
        server.create_database(&db).await?;
        let what = "bench --history: init-fn apply failed";
        engine.push(cold_run(server, &secrets, bootstrap, &db, json!({}), what).await?);

        let db = format!("bench_history_psql_{i}");
        server.create_database(&db).await?;
        let started = Instant::now();
        let mut peak = 0;
        for file in files {
            let (_, rss) = psql_file(server, &db, file).await?;
            peak = peak.max(rss);
        }
        psql.push((started.elapsed(), peak));
    }
    Ok((engine, psql))
}

/// The history with the most bytes of SQL.
fn largest() -> anyhow::Result<PathBuf> {
    let root = crate::project_root().join(HISTORIES);
    let mut best: Option<(u64, PathBuf)> = None;
    for entry in std::fs::read_dir(&root).with_context(|| format!("read {}", root.display()))? {
        let dir = entry?.path();
        if !dir.is_dir() {
            continue;
        }
        let mut bytes = 0;
        for f in crate::schema::migration_files(&dir)? {
            bytes += std::fs::metadata(&f)?.len();
        }
        if best.as_ref().is_none_or(|(b, _)| bytes > *b) {
            best = Some((bytes, dir));
        }
    }
    best.map(|(_, d)| d)
        .with_context(|| format!("bench --history: no history under {}", root.display()))
}

/// The bootstrap built with `dir` embedded instead of `sql/`, copied where later builds leave it.
fn build_with(dir: &Path, name: &str) -> anyhow::Result<PathBuf> {
    let sh = Shell::new()?;
    sh.change_dir(crate::project_root());
    let cargo = crate::cargo();
    crate::without_package_env(cmd!(sh, "{cargo} build --profile local -p init-fn"))
        .env("INIT_FN_SQL_DIR", dir)
        .run()
        .context("bench --history: build the bootstrap with the history")?;
    let out = crate::build::target_dir().join("bench-history");
    std::fs::create_dir_all(&out)?;
    let dest = out.join(format!("init-fn-{name}"));
    std::fs::copy(Profile::Local.bootstrap_path(), &dest)
        .with_context(|| format!("copy the bootstrap to {}", dest.display()))?;
    Ok(dest)
}
