//! Real migration histories (issue 24), from public projects (`tests/fixtures/histories/*/PROVENANCE.md`):
//! Ory Hydra's and Trigger.dev's first 120 PostgreSQL migrations and Danbooru's pg_dump-style
//! `structure.sql`. Each is applied through the engine and with `psql -f` file by file (each file in
//! its own session) on another database of the same server: the same schema, the same relations and
//! owners, the same row counts; a rerun applies nothing, `verify` is clean, and `plan`'s statement
//! split equals libpg_query's. The engine-vs-psql apply time is printed.

use std::time::Instant;

use serde_json::json;
use tests::{
    harness::{self, DB, Harness, states},
    histories, pglast,
};

/// `project`'s history has at least `files` files and `at_least` statements.
async fn applies_as_psql_applies_it(
    project: &str,
    files: usize,
    at_least: usize,
) -> anyhow::Result<()> {
    let migrations = histories::load(project)?;
    assert!(
        migrations.len() >= files,
        "{project}: {} files",
        migrations.len()
    );
    let h = Harness::from_env().await?;
    let state = h.state(&[], migrations.clone());

    let started = Instant::now();
    let report = harness::invoke(&state, json!({})).await?;
    let engine = started.elapsed();
    assert_eq!(report["status"], "ok", "{project}: {report:#}");
    assert!(
        states(&report).iter().all(|s| s == "applied"),
        "{project}: {:?}",
        states(&report)
    );

    h.pg.create_database("psql_db").await?;
    let started = Instant::now();
    histories::apply_with_psql(&h.pg, "psql_db", &migrations)?;
    let psql = started.elapsed();
    eprintln!(
        "real_histories: {project}: {} file(s): engine {:.2} s, psql -f {:.2} s, ratio {:.2}",
        migrations.len(),
        engine.as_secs_f64(),
        psql.as_secs_f64(),
        engine.as_secs_f64() / psql.as_secs_f64()
    );

    let (ours, psqls) = (h.client(DB).await?, h.client("psql_db").await?);
    assert_eq!(
        h.pg.dump_schema(DB).await?,
        h.pg.dump_schema("psql_db").await?,
        "{project}: the engine's schema differs from psql's"
    );
    assert_eq!(
        histories::relations(&ours).await?,
        histories::relations(&psqls).await?
    );
    assert_eq!(
        histories::row_counts(&ours).await?,
        histories::row_counts(&psqls).await?
    );

    let rerun = harness::invoke(&state, json!({})).await?;
    assert!(
        states(&rerun).iter().all(|s| s == "already_applied"),
        "{project}"
    );
    let verify = harness::invoke(&state, json!({"action": "verify"})).await?;
    assert_eq!(verify["status"], "ok", "{project}: {verify:#}");

    // Plan on a fresh database: every statement of every file, split as libpg_query splits it.
    h.pg.create_database("plan_db").await?;
    let fresh = h.state(&[("DB_NAME", "plan_db")], migrations.clone());
    let plan = harness::invoke(&fresh, json!({"action": "plan"})).await?;
    let planned = plan["plan"].as_array().unwrap();
    assert_eq!(planned.len(), migrations.len(), "{project}");
    let asked: Vec<(String, Vec<String>)> = migrations
        .iter()
        .map(|m| {
            let mine = init_fn::sql::split(&m.sql)
                .unwrap()
                .into_iter()
                .map(|s| s.text)
                .collect();
            (m.sql.clone(), mine)
        })
        .collect();
    let verdicts = pglast::judge(&asked)?;
    let mut statements = 0;
    for ((m, p), verdict) in migrations.iter().zip(planned).zip(verdicts) {
        let v = verdict.map_err(|e| anyhow::anyhow!("{project} {}: {e}", m.name))?;
        assert!(
            v.mine == v.theirs,
            "{project} {}: init-fn and libpg_query split it differently",
            m.name
        );
        assert_eq!(
            p["statements"].as_array().unwrap().len(),
            v.theirs.len(),
            "{project} {}: plan's statements",
            m.name
        );
        statements += v.theirs.len();
    }
    eprintln!(
        "real_histories: {project}: {statements} statement(s) split as libpg_query splits them"
    );
    assert!(statements >= at_least, "{project}: {statements} statements");
    Ok(())
}

#[tokio::test]
async fn ory_hydra_120_migrations() -> anyhow::Result<()> {
    applies_as_psql_applies_it("ory-hydra", 120, 120).await
}

#[tokio::test]
async fn trigger_dev_120_migrations() -> anyhow::Result<()> {
    applies_as_psql_applies_it("trigger-dev", 120, 120).await
}

#[tokio::test]
async fn danbooru_structure_sql_500_statements() -> anyhow::Result<()> {
    applies_as_psql_applies_it("danbooru", 1, 500).await
}
