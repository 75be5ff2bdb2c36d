//! `cargo xtask bench --scale`: does an up-to-date run cost more as the database grows? An up-to-date
//! `apply` on an empty `documents` vs one holding millions of generated rows, and with 1 vs 100
//! already-applied migrations, side by side with the ratios; plus the exact `count(*)` a report used
//! to do on every run (`verify` with `"exact_counts": true`) as the baseline.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::{Value, json};
use xshell::{Shell, cmd};

use super::series::{Series, cold_run, print_table, ratio};
use crate::local::postgres::{PgChoice, PgServer};
use crate::local::secrets_manager::SecretsManager;
use crate::test_local::{Profile, SECRET_ID};

/// Applied migrations in the "many" case.
const MANY: usize = 100;

pub fn run(choice: &PgChoice, runs: usize, rows: i64) -> anyhow::Result<()> {
    let started = Instant::now();
    let say = |line: &str| eprintln!("[{:>7.2}s] {line}", started.elapsed().as_secs_f64());
    say("build: bootstrap with sql/ (profile local)");
    let one = crate::test_local::build_bootstrap(Profile::Local)?;
    let one = keep_copy(&one, "init-fn-1-migration")?;
    say(&format!(
        "build: bootstrap with {MANY} generated migrations (profile local, INIT_FN_SQL_DIR)"
    ));
    let many = build_with_many_migrations()?;
    // Leave the ordinary local build in place for the next test-local.
    crate::test_local::build_bootstrap(Profile::Local)?;

    let runtime = crate::runtime()?;
    runtime.block_on(async move {
        let server = PgServer::start(choice).await?;
        let version = server.server_version().await.unwrap_or_default();
        say(&format!(
            "postgres: {} PostgreSQL {version}, sslmode={}",
            server.kind(),
            server.sslmode()
        ));
        let result = measure(&server, &one, &many, runs, rows, &say).await;
        server.stop().await?;
        let r = result?;
        println!(
            "bench --scale: {runs} runs each, up-to-date databases, cold bootstrap spawn -> report"
        );
        print_table(46, &[&r.empty, &r.big, &r.big_exact, &r.many]);
        println!(
            "ratios: {rows} rows vs empty {:.2}x (goal <= 1.2x; exact count(*) would be {:.2}x); \
             {MANY} vs 1 applied migrations {:.2}x (goal <= 1.5x)",
            ratio(&r.big, &r.empty),
            ratio(&r.big_exact, &r.empty),
            ratio(&r.many, &r.empty),
        );
        Ok(())
    })
}

struct ScaleResults {
    empty: Series,
    big: Series,
    big_exact: Series,
    many: Series,
}

async fn measure(
    server: &PgServer,
    one: &Path,
    many: &Path,
    runs: usize,
    rows: i64,
    say: &dyn Fn(&str),
) -> anyhow::Result<ScaleResults> {
    let secrets = SecretsManager::start().await?;
    secrets.put(SECRET_ID, server.password());
    for db in ["scale_empty", "scale_big", "scale_many"] {
        server.create_database(db).await?;
    }
    invoke(server, &secrets, one, "scale_empty", json!({})).await?;
    invoke(server, &secrets, one, "scale_big", json!({})).await?;
    invoke(server, &secrets, many, "scale_many", json!({})).await?;
    say(&format!(
        "data: generating {rows} rows in scale_big.documents"
    ));
    let fill = fill_documents(server, "scale_big", rows);
    tokio::pin!(fill);
    let (filling, mut tick) = (
        Instant::now(),
        tokio::time::interval(Duration::from_secs(10)),
    );
    tick.tick().await;
    // A line every 10 s: millions of rows take a while, and a silent minute looks hung.
    loop {
        tokio::select! {
            done = &mut fill => break done?,
            _ = tick.tick() => say(&format!("data: still generating ({:.0} s)", filling.elapsed().as_secs_f64())),
        }
    }
    say("data: done (ANALYZE run); measuring");

    let mut r = ScaleResults {
        empty: Series::new("apply, empty documents, 1 migration"),
        big: Series::new("apply, documents with rows, 1 migration"),
        big_exact: Series::new("verify exact_counts, documents with rows"),
        many: Series::new("apply, empty documents, 100 migrations"),
    };
    let verify_exact = json!({"action": "verify", "exact_counts": true});
    for run in 0..runs {
        say(&format!("run {}/{runs}", run + 1));
        for (series, bootstrap, db, event) in [
            (&mut r.empty, one, "scale_empty", json!({})),
            (&mut r.big, one, "scale_big", json!({})),
            (&mut r.big_exact, one, "scale_big", verify_exact.clone()),
            (&mut r.many, many, "scale_many", json!({})),
        ] {
            series.push(invoke(server, &secrets, bootstrap, db, event).await?);
        }
    }
    Ok(r)
}

/// One cold invocation; fails unless the report says ok.
async fn invoke(
    server: &PgServer,
    secrets: &SecretsManager,
    bootstrap: &Path,
    db: &str,
    event: Value,
) -> anyhow::Result<(std::time::Duration, u64)> {
    let what = format!("bench --scale: {db}");
    cold_run(server, secrets, bootstrap, db, event, &what).await
}

/// `rows` generated documents in one INSERT ... SELECT, then ANALYZE (what autovacuum would do).
async fn fill_documents(server: &PgServer, db: &str, rows: i64) -> anyhow::Result<()> {
    let client = server.client(db).await?;
    client
        .execute(
            "INSERT INTO documents (s3_key, document_type, file_name, file_size, status, metadata)
             SELECT 'bench/' || g || '.pdf', 'invoice', 'doc-' || g || '.pdf', 1000 + g % 5000,
                    (ARRAY['pending','validated','failed'])[1 + g % 3], jsonb_build_object('n', g)
               FROM generate_series(1, $1::int8) AS g",
            &[&rows],
        )
        .await
        .context("bench --scale: generate rows")?;
    client
        .batch_execute("ANALYZE documents")
        .await
        .context("bench --scale: ANALYZE")?;
    Ok(())
}

/// A copy of `bin` under `target/bench-scale/` that later builds do not overwrite.
fn keep_copy(bin: &Path, name: &str) -> anyhow::Result<PathBuf> {
    let dir = crate::build::target_dir().join("bench-scale");
    std::fs::create_dir_all(&dir)?;
    let dest = dir.join(name);
    std::fs::copy(bin, &dest).with_context(|| format!("copy {}", bin.display()))?;
    Ok(dest)
}

/// `sql/` plus 99 generated migrations (each a `COMMENT ON TABLE`: no new objects, so only the count
/// of applied migrations differs), embedded through `INIT_FN_SQL_DIR`.
fn build_with_many_migrations() -> anyhow::Result<PathBuf> {
    let dir = crate::build::target_dir().join("bench-scale/sql");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    std::fs::copy(
        crate::project_root().join("sql/0001_initial_schema.sql"),
        dir.join("0001_initial_schema.sql"),
    )?;
    for v in 2..=MANY {
        std::fs::write(
            dir.join(format!("{v:04}_bench_comment_{v}.sql")),
            format!("COMMENT ON TABLE documents IS 'bench migration {v}';\n"),
        )?;
    }
    let sh = Shell::new()?;
    sh.change_dir(crate::project_root());
    let cargo = crate::cargo();
    crate::without_package_env(cmd!(sh, "{cargo} build --profile local -p init-fn"))
        .env("INIT_FN_SQL_DIR", &dir)
        .run()
        .context("bench --scale: build the bootstrap with generated migrations")?;
    keep_copy(&Profile::Local.bootstrap_path(), "init-fn-100-migrations")
}
