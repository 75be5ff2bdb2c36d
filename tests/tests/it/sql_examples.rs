//! The five statements the old splitter got wrong (issue 14), applied through the function's engine
//! in a transactional and a no-transaction migration on real PostgreSQL: the schema afterwards is the
//! one `psql -1 -f` makes of the same files on another database. The same for the realistic corpus
//! of `sql_split.rs`. And an unterminated body is `MigrationFailed` naming the file and line, with
//! nothing applied.

use std::{path::Path, process::Command};

use init_fn::engine::run::Migration;

use serde_json::json;
use tests::harness::{self, DB, Harness, states, with_extra};

/// In one transaction with its ledger row.
const EXAMPLES: &str = r"-- 0002 sql_examples: what psql splits correctly and the old splitter did not.
CREATE FUNCTION add_one(a int) RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT a + 1; END;
/* outer /* nested */ still a comment; */
COMMENT ON TABLE documents IS E'it\'s; here';
CREATE TABLE notes (id int PRIMARY KEY, body text);
CREATE RULE notes_notify AS ON INSERT TO notes DO ALSO (NOTIFY a; NOTIFY b);
CREATE INDEX ON documents (file_name);
";

/// The same five kinds, statement by statement.
const EXAMPLES_NO_TRANSACTION: &str = r"-- init-fn: no-transaction
-- 0003 sql_examples_one_by_one: the same, each statement on its own.
CREATE FUNCTION add_two(a int) RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT a + 2; END;
/* outer /* nested */ still a comment; */
COMMENT ON TABLE processing_logs IS E'it\'s; there';
CREATE TABLE notes_too (id int PRIMARY KEY, body text);
CREATE RULE notes_too_notify AS ON INSERT TO notes_too DO ALSO (NOTIFY a; NOTIFY b);
CREATE INDEX ON processing_logs (action);
";

/// `psql -X -1 -v ON_ERROR_STOP=1 -f file` against `db` (the local PostgreSQL binaries' psql);
/// without `-1` when `single` is false.
fn psql_file(h: &Harness, db: &str, file: &Path, single: bool) -> anyhow::Result<()> {
    let psql = xtask::local::postgres::local_bin_dir()?.join("psql");
    let out = Command::new(&psql)
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1"])
        .args(single.then_some("-1"))
        .arg("-p")
        .arg(h.pg.port().to_string())
        .arg("-U")
        .arg(h.pg.user())
        .arg("-d")
        .arg(db)
        .arg("-f")
        .arg(file)
        .env("PGPASSWORD", h.pg.password())
        .env("PGSSLMODE", "prefer")
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "psql -1 -f {} failed ({}): {}",
        file.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(())
}

#[tokio::test]
async fn the_five_examples_apply_as_psql_applies_them() -> anyhow::Result<()> {
    let h = Harness::from_env().await?;
    let migrations = with_extra(&[
        (2, "sql_examples", EXAMPLES),
        (3, "sql_examples_one_by_one", EXAMPLES_NO_TRANSACTION),
    ]);
    assert!(!migrations[2].transactional);
    let report = harness::invoke(&h.state(&[], migrations.clone()), json!({})).await?;
    assert_eq!(report["status"], "ok", "{report:#}");
    assert_eq!(states(&report), ["applied", "applied", "applied"]);

    // What each example did, read back from the server.
    let c = h.client(DB).await?;
    let row = c
        .query_one(
            "SELECT add_one(1), add_two(1), obj_description('documents'::regclass, 'pg_class'), \
             obj_description('processing_logs'::regclass, 'pg_class')",
            &[],
        )
        .await?;
    let (one, two): (i32, i32) = (row.get(0), row.get(1));
    assert_eq!((one, two), (2, 3));
    let (d, p): (String, String) = (row.get(2), row.get(3));
    assert_eq!((d.as_str(), p.as_str()), ("it's; here", "it's; there"));
    let rules: Vec<String> = c
        .query(
            "SELECT rulename::text FROM pg_rules WHERE definition LIKE '%NOTIFY a;%NOTIFY b;%' ORDER BY 1",
            &[],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(rules, ["notes_notify", "notes_too_notify"]);
    let relations = h.relations(DB).await?;
    for index in ["documents_file_name_idx", "processing_logs_action_idx"] {
        assert!(relations.contains(&index.to_string()), "{relations:?}");
    }

    let ours = same_as_psql(&h, &migrations, true).await?;
    assert!(ours.contains("BEGIN ATOMIC"), "{ours}");
    Ok(())
}

/// The same files through psql on another database of the same server give the same
/// `pg_dump --schema-only` as the engine gave `documents_db`; `-1` for every file when `single`, else
/// for the transactional ones (psql cannot run `CREATE INDEX CONCURRENTLY` inside one).
async fn same_as_psql(
    h: &Harness,
    migrations: &[Migration],
    single: bool,
) -> anyhow::Result<String> {
    h.pg.create_database("psql_db").await?;
    let dir = tempfile::tempdir()?;
    for m in migrations {
        let file = dir.path().join(format!("{:04}_{}.sql", m.version, m.name));
        std::fs::write(&file, &m.sql)?;
        psql_file(h, "psql_db", &file, single || m.transactional)?;
    }
    let ours = h.pg.dump_schema(DB).await?;
    let psqls = h.pg.dump_schema("psql_db").await?;
    assert_eq!(ours, psqls, "the engine's schema differs from psql's");
    Ok(ours)
}

#[tokio::test]
async fn the_realistic_corpus_applies_as_psql_applies_it() -> anyhow::Result<()> {
    let h = Harness::from_env().await?;
    let mut corpus = Vec::new();
    for entry in std::fs::read_dir(harness::root().join("tests/fixtures/sql_corpus"))? {
        let path = entry?.path();
        let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
        let (version, name) = stem.split_once('_').unwrap();
        corpus.push((
            version.parse::<u32>()?,
            name.to_string(),
            std::fs::read_to_string(&path)?,
        ));
    }
    corpus.sort();
    let extra: Vec<(u32, &str, &str)> = corpus
        .iter()
        .map(|(v, n, s)| (*v, n.as_str(), s.as_str()))
        .collect();
    let migrations = with_extra(&extra);
    let report = harness::invoke(&h.state(&[], migrations.clone()), json!({})).await?;
    assert_eq!(report["status"], "ok", "{report:#}");
    assert!(states(&report).iter().all(|s| s == "applied"), "{report:#}");
    assert_eq!(states(&report).len(), 1 + corpus.len());
    let ours = same_as_psql(&h, &migrations, false).await?;
    for object in [
        "search_documents",
        "documents_audit_insert",
        "daily_uploads",
        "documents_file_name_idx",
    ] {
        assert!(ours.contains(object), "{object} missing from\n{ours}");
    }
    Ok(())
}

#[tokio::test]
async fn an_unterminated_body_is_migration_failed_naming_file_and_line() -> anyhow::Result<()> {
    let h = Harness::from_env().await?;
    let broken = "CREATE TABLE audit (id int);\n\nDO $body$\nBEGIN\n  PERFORM 1;\nEND $bod$;\n";
    for (name, sql) in [
        ("unterminated", broken.to_string()),
        (
            "unterminated_one_by_one",
            format!("-- init-fn: no-transaction\n{broken}"),
        ),
    ] {
        let err = harness::invoke(
            &h.state(&[], with_extra(&[(2, name, sql.as_str())])),
            json!({}),
        )
        .await
        .expect_err("an unterminated body must fail");
        let line = if sql.starts_with("--") { 4 } else { 3 };
        assert_eq!(err.error_type(), "MigrationFailed", "{err}");
        assert_eq!(
            err.to_string(),
            format!(
                "migration 2 ({name}) failed: SQLSTATE 42601: 0002_{name}.sql: unterminated \
                 dollar-quoted string $body$ starting at line {line}; nothing of it was run"
            )
        );
        // Not even the statement before it ran.
        assert!(!h.relations(DB).await?.contains(&"audit".to_string()));
        assert_eq!(h.ledger(DB).await?.len(), 1);
    }
    Ok(())
}
