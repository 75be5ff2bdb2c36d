//! The migration engine against real PostgreSQL: fresh apply, rerun, adoption of the original's schema,
//! schema equivalence, 16-way concurrency, a failing migration, objects read from the catalog and the
//! server's notices, and snapshot-tested reports.

use init_fn::engine::run::LOCK_KEY;
use serde_json::{Value, json};
use tests::harness::{self, DB, Harness, SEED_DDL, outcomes, states, with_extra};

/// What 0001 creates, as the catalog names it: 2 sequences, 2 tables, 4 constraints (2 primary
/// keys, the unique `s3_key`, the foreign key) and 9 indexes (3 behind constraints, 6 named).
const CREATED_BY_0001: usize = 17;

fn assert_report(name: &str, report: &Value) {
    insta::with_settings!({ snapshot_path => "../../snapshots", prepend_module_to_snapshot => false }, {
        insta::assert_json_snapshot!(name, report, {
            ".duration_ms" => "[ms]",
            ".migrations[].duration_ms" => "[ms]",
            ".server_version" => "[version]",
        });
    });
}

/// Fresh apply, rerun, status, verify and equivalence with the original's DDL, on one provider.
async fn fresh_apply_rerun_and_equivalence(h: &Harness) -> anyhow::Result<()> {
    let fresh = h.invoke(&[], json!({})).await?;
    assert_eq!(fresh["status"], "ok");
    assert_eq!(fresh["action"], "apply");
    assert_eq!(fresh["database"], DB);
    assert_eq!(states(&fresh), ["applied"]);
    assert!(outcomes(&fresh).iter().all(|o| o == "created"), "{fresh:#}");
    assert_eq!(outcomes(&fresh).len(), CREATED_BY_0001, "{fresh:#}");
    assert_eq!(
        fresh["tables"],
        json!([
            {"name": "documents", "rows": 0, "rows_exact": true},
            {"name": "processing_logs", "rows": 0, "rows_exact": true}
        ])
    );
    assert!(
        fresh["indexes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["present"] == true)
    );

    let rerun = h.invoke(&[], json!({"action": "apply"})).await?;
    assert_eq!(states(&rerun), ["already_applied"]);
    // Nothing ran, so nothing was created or found in place.
    assert_eq!(rerun["objects"], json!([]), "{rerun:#}");
    assert_eq!(h.ledger(DB).await?, vec![(1, "initial_schema".to_string())]);

    // The original's DDL on a second database of the same server: identical pg_dump of public.
    h.pg.create_database("seed_db").await?;
    h.pg.client("seed_db")
        .await?
        .batch_execute(SEED_DDL)
        .await?;
    let ours = h.pg.dump_schema(DB).await?;
    let theirs = h.pg.dump_schema("seed_db").await?;
    assert!(ours.contains("idx_documents_s3_key"), "{ours}");
    assert!(!ours.contains("_init_fn_migrations"));
    assert_eq!(
        ours, theirs,
        "schema after 0001 differs from the original's"
    );
    Ok(())
}

#[tokio::test]
async fn fresh_apply_rerun_and_equivalence_on_docker() -> anyhow::Result<()> {
    let h = Harness::start(&harness::docker_or_fallback().await?).await?;
    fresh_apply_rerun_and_equivalence(&h).await
}

#[tokio::test]
async fn fresh_apply_rerun_and_equivalence_on_local_cluster() -> anyhow::Result<()> {
    let h = Harness::start(&xtask::local::postgres::PgChoice::Local).await?;
    fresh_apply_rerun_and_equivalence(&h).await
}

#[tokio::test]
async fn reports_match_snapshots() -> anyhow::Result<()> {
    let h = Harness::from_env().await?;
    assert_report(
        "plan_fresh",
        &h.invoke(&[], json!({"action": "plan"})).await?,
    );
    assert_report(
        "status_fresh",
        &h.invoke(&[], json!({"action": "status"})).await?,
    );
    // Plan and status changed nothing: no ledger, no tables.
    assert!(h.ledger(DB).await?.is_empty());
    assert!(h.relations(DB).await?.is_empty());
    assert_report("apply_fresh", &h.invoke(&[], json!({})).await?);
    assert_report(
        "apply_rerun",
        &h.invoke(&[], json!({"action": "apply"})).await?,
    );
    assert_report(
        "status_current",
        &h.invoke(&[], json!({"action": "status"})).await?,
    );
    assert_report(
        "verify_current",
        &h.invoke(&[], json!({"action": "verify"})).await?,
    );
    assert_report(
        "plan_current",
        &h.invoke(&[], json!({"action": "plan"})).await?,
    );
    Ok(())
}

#[tokio::test]
async fn adopts_a_database_the_original_initialized() -> anyhow::Result<()> {
    let h = Harness::from_env().await?;
    h.pg.client(DB).await?.batch_execute(SEED_DDL).await?;
    h.pg.create_database("seed_db").await?;
    h.pg.client("seed_db")
        .await?
        .batch_execute(SEED_DDL)
        .await?;
    let before = h.pg.dump_schema(DB).await?;

    let plan = h.invoke(&[], json!({"action": "plan"})).await?;
    assert_eq!(states(&plan), ["pending"]);
    assert_eq!(plan["objects"], json!([]), "plan runs nothing");

    let adopted = h.invoke(&[], json!({})).await?;
    assert_report("apply_adopted", &adopted);
    assert_eq!(states(&adopted), ["adopted"]);
    assert!(
        outcomes(&adopted).iter().all(|o| o == "already_present"),
        "{adopted:#}"
    );
    // The server's notices name each object 0001's IF NOT EXISTS found in place.
    let names: Vec<&str> = adopted["objects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "documents",
            "processing_logs",
            "idx_documents_s3_key",
            "idx_documents_status",
            "idx_documents_type",
            "idx_documents_date",
            "idx_logs_document_id",
            "idx_logs_agent"
        ]
    );
    assert_eq!(h.ledger(DB).await?, vec![(1, "initial_schema".to_string())]);
    let after = h.pg.dump_schema(DB).await?;
    assert_eq!(before, after, "adoption changed the schema");
    assert_eq!(after, h.pg.dump_schema("seed_db").await?);

    let verify = h.invoke(&[], json!({"action": "verify"})).await?;
    assert_eq!(states(&verify), ["already_applied"]);
    Ok(())
}

#[tokio::test]
async fn adopts_a_partial_schema_left_by_the_original_race() -> anyhow::Result<()> {
    // The original's race left some objects behind: the first table only.
    let h = Harness::from_env().await?;
    let first_table = SEED_DDL.split(';').next().unwrap();
    h.pg.client(DB).await?.batch_execute(first_table).await?;
    let report = h.invoke(&[], json!({})).await?;
    assert_eq!(
        states(&report),
        ["applied"],
        "not everything pre-existed, so it is not `adopted`"
    );
    let outcomes = outcomes(&report);
    assert_eq!(outcomes[0], "already_present");
    assert_eq!(report["objects"][0]["name"], "documents");
    assert!(outcomes[1..].iter().all(|o| o == "created"), "{outcomes:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixteen_concurrent_applies_all_succeed_five_times_in_a_row() -> anyhow::Result<()> {
    let h = Harness::from_env().await?;
    for round in 1..=5 {
        let db = format!("concurrent_{round}");
        h.pg.create_database(&db).await?;
        let state =
            std::sync::Arc::new(h.state(&[("DB_NAME", &db)], init_fn::engine::run::embedded()));
        let runs: Vec<_> = (0..16)
            .map(|_| {
                let state = state.clone();
                tokio::spawn(async move { harness::invoke(&state, json!({})).await })
            })
            .collect();
        let mut applied = 0;
        let mut created = 0;
        for run in runs {
            let report = run
                .await?
                .map_err(|e| anyhow::anyhow!("round {round}: {}: {e}", e.error_type()))?;
            let s = states(&report);
            assert!(
                s == ["applied"] || s == ["already_applied"],
                "round {round}: {s:?}"
            );
            applied += usize::from(s == ["applied"]);
            created += outcomes(&report).iter().filter(|o| *o == "created").count();
        }
        assert_eq!(applied, 1, "round {round}: exactly one run applies 0001");
        assert_eq!(
            created, CREATED_BY_0001,
            "round {round}: each object is created once"
        );
        let ledger = h.ledger(&db).await?;
        assert_eq!(
            ledger,
            vec![(1, "initial_schema".to_string())],
            "round {round}"
        );
        assert_eq!(
            h.relations(&db).await?.len(),
            2 + 6 + 3 + 2,
            "round {round}: 2 tables, 6 indexes, 3 constraint indexes, 2 sequences"
        );
    }
    Ok(())
}

#[tokio::test]
async fn a_failing_migration_leaves_nothing_behind_and_a_corrected_rerun_completes()
-> anyhow::Result<()> {
    let h = Harness::from_env().await?;
    let broken = with_extra(&[(
        2,
        "add_audit",
        "CREATE TABLE audit (id serial PRIMARY KEY);\nSELECT 1/0;\n",
    )]);
    let err = harness::invoke(&h.state(&[], broken), json!({}))
        .await
        .unwrap_err();
    assert_eq!(err.error_type(), "MigrationFailed");
    let message = err.one_line();
    assert!(message.contains("migration 2 (add_audit)"), "{message}");
    assert!(message.contains("SQLSTATE 22012"), "{message}");
    assert!(!message.contains(h.pg.password()));
    // 0001 committed on its own; nothing of 0002 is left.
    assert_eq!(h.ledger(DB).await?, vec![(1, "initial_schema".to_string())]);
    assert!(!h.relations(DB).await?.contains(&"audit".to_string()));

    let fixed = with_extra(&[(
        2,
        "add_audit",
        "CREATE TABLE audit (id serial PRIMARY KEY);\n",
    )]);
    let report = harness::invoke(&h.state(&[], fixed), json!({})).await?;
    assert_eq!(states(&report), ["already_applied", "applied"]);
    assert_eq!(h.ledger(DB).await?.len(), 2);
    assert!(h.relations(DB).await?.contains(&"audit".to_string()));
    Ok(())
}

#[tokio::test]
async fn no_transaction_migrations_run_statement_by_statement() -> anyhow::Result<()> {
    let h = Harness::from_env().await?;
    let migrations = with_extra(&[(
        2,
        "concurrent_index",
        "-- init-fn: no-transaction\nCREATE INDEX CONCURRENTLY IF NOT EXISTS idx_documents_file_name ON documents(file_name);\nCREATE INDEX CONCURRENTLY IF NOT EXISTS idx_logs_action ON processing_logs(action);\n",
    )]);
    let report = harness::invoke(&h.state(&[], migrations.clone()), json!({})).await?;
    assert_eq!(states(&report), ["applied", "applied"]);
    let indexes = report["indexes"].as_array().unwrap();
    assert_eq!(indexes.len(), 11, "9 of 0001 and 2 of 0002: {report:#}");
    assert!(indexes.iter().all(|i| i["present"] == true));
    let of_0002: Vec<(&str, &str)> = report["objects"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| o["migration"] == 2)
        .map(|o| (o["name"].as_str().unwrap(), o["outcome"].as_str().unwrap()))
        .collect();
    assert_eq!(
        of_0002,
        [
            ("idx_documents_file_name", "created"),
            ("idx_logs_action", "created")
        ]
    );
    let rerun = harness::invoke(&h.state(&[], migrations), json!({"action": "verify"})).await?;
    assert_eq!(states(&rerun), ["already_applied", "already_applied"]);
    Ok(())
}

#[tokio::test]
async fn verify_fails_on_pending_migrations_and_invalid_indexes() -> anyhow::Result<()> {
    let h = Harness::from_env().await?;
    let pending = h
        .invoke(&[], json!({"action": "verify"}))
        .await
        .unwrap_err();
    assert_eq!(pending.error_type(), "Verify");
    assert!(
        pending.one_line().contains("pending migrations 1"),
        "{pending}"
    );

    // A CREATE UNIQUE INDEX CONCURRENTLY that fails on duplicate rows leaves an INVALID index.
    h.invoke(&[], json!({})).await?;
    h.pg.client(DB)
        .await?
        .batch_execute(
            "INSERT INTO documents (s3_key, document_type, file_name) VALUES ('a', 't', 'same'), ('b', 't', 'same')",
        )
        .await?;
    let unique = with_extra(&[(
        2,
        "unique_file_name",
        "-- init-fn: no-transaction\nCREATE UNIQUE INDEX CONCURRENTLY idx_documents_file_name ON documents (file_name);\n",
    )]);
    let failed = harness::invoke(&h.state(&[], unique), json!({}))
        .await
        .unwrap_err();
    assert_eq!(failed.error_type(), "MigrationFailed", "{failed}");
    let report = h.invoke(&[], json!({"action": "status"})).await?;
    let invalid: Vec<&Value> = report["indexes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["present"] == false)
        .collect();
    assert_eq!(
        invalid,
        [&json!({"name": "idx_documents_file_name", "table": "documents", "present": false})]
    );
    let err = h
        .invoke(&[], json!({"action": "verify"}))
        .await
        .unwrap_err();
    assert_eq!(err.error_type(), "Verify");
    assert!(
        err.one_line()
            .contains("index idx_documents_file_name on documents is INVALID"),
        "{err}"
    );
    Ok(())
}

/// A migration of every object kind: unnamed objects get PostgreSQL's names, an `IF NOT EXISTS` that
/// finds its object is `already_present` (the server's notice), a dropped index is `dropped`.
const EVERY_KIND: &str = "CREATE INDEX ON documents (file_name);
ALTER TABLE documents ADD COLUMN IF NOT EXISTS status VARCHAR(50);
ALTER TABLE documents ADD COLUMN reviewed boolean NOT NULL DEFAULT false;
CREATE SEQUENCE IF NOT EXISTS documents_id_seq;
CREATE TYPE review_state AS ENUM ('new', 'done');
CREATE DOMAIN score AS double precision CHECK (VALUE >= 0);
CREATE TYPE page_range AS (first integer, last integer);
CREATE TABLE reviews (
    id integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    document_id integer REFERENCES documents (id),
    state review_state NOT NULL DEFAULT 'new',
    CHECK (document_id > 0)
);
CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.updated_at := now(); RETURN NEW; END $$;
CREATE PROCEDURE forget(days integer) LANGUAGE plpgsql AS $$ BEGIN DELETE FROM processing_logs WHERE id < days; END $$;
CREATE TRIGGER documents_touch BEFORE UPDATE ON documents FOR EACH ROW EXECUTE FUNCTION touch();
CREATE VIEW pending_documents AS SELECT id, s3_key FROM documents WHERE status = 'pending';
CREATE MATERIALIZED VIEW document_counts AS SELECT status, count(*) AS n FROM documents GROUP BY status;
DROP INDEX idx_documents_type;
";

#[tokio::test]
async fn objects_come_from_the_catalog_and_the_servers_notices() -> anyhow::Result<()> {
    let h = Harness::from_env().await?;
    h.invoke(&[], json!({})).await?;
    let migrations = with_extra(&[(2, "every_kind", EVERY_KIND)]);
    let report = harness::invoke(&h.state(&[], migrations), json!({})).await?;
    assert_eq!(states(&report), ["already_applied", "applied"]);
    insta::with_settings!({ snapshot_path => "../../snapshots", prepend_module_to_snapshot => false }, {
        insta::assert_json_snapshot!("objects_every_kind", report["objects"]);
    });
    let has = |kind: &str, name: &str, outcome: &str| {
        report["objects"].as_array().unwrap().iter().any(|o| {
            o["kind"] == kind && o["name"] == name && o["outcome"] == outcome && o["migration"] == 2
        })
    };
    assert!(
        has("index", "documents_file_name_idx", "created"),
        "{report:#}"
    );
    assert!(has("column", "status", "already_present"), "{report:#}");
    assert!(
        has("sequence", "documents_id_seq", "already_present"),
        "{report:#}"
    );
    assert!(has("column", "reviewed", "created"), "{report:#}");
    assert!(
        has("constraint", "reviews_document_id_fkey", "created"),
        "{report:#}"
    );
    assert!(
        has("constraint", "reviews_document_id_check", "created"),
        "{report:#}"
    );
    assert!(has("sequence", "reviews_id_seq", "created"), "{report:#}");
    assert!(has("function", "touch()", "created"), "{report:#}");
    assert!(
        has("procedure", "forget(IN days integer)", "created"),
        "{report:#}"
    );
    assert!(has("enum", "review_state", "created"), "{report:#}");
    assert!(has("domain", "score", "created"), "{report:#}");
    assert!(has("composite_type", "page_range", "created"), "{report:#}");
    assert!(has("trigger", "documents_touch", "created"), "{report:#}");
    assert!(has("view", "pending_documents", "created"), "{report:#}");
    assert!(
        has("materialized_view", "document_counts", "created"),
        "{report:#}"
    );
    assert!(has("index", "idx_documents_type", "dropped"), "{report:#}");
    // The columns of a new table are part of it, not objects of their own.
    assert!(
        !report["objects"]
            .as_array()
            .unwrap()
            .iter()
            .any(|o| o["kind"] == "column" && o["table"] == "reviews")
    );
    Ok(())
}

#[tokio::test]
async fn the_lock_is_taken_before_the_ledger_and_released_after() -> anyhow::Result<()> {
    let h = Harness::from_env().await?;
    let holder = h.pg.client(DB).await?;
    holder
        .execute("SELECT pg_advisory_lock($1)", &[&LOCK_KEY])
        .await?;
    let started = std::time::Instant::now();
    let err = h
        .invoke(&[("DB_LOCK_TIMEOUT_S", "1")], json!({}))
        .await
        .unwrap_err();
    assert_eq!(err.error_type(), "LockTimeout", "{err}");
    assert!(err.one_line().contains("DB_LOCK_TIMEOUT_S"));
    assert!(started.elapsed() < std::time::Duration::from_secs(20));
    // Nothing was touched: not even the ledger exists.
    assert!(h.ledger(DB).await?.is_empty());
    assert!(h.relations(DB).await?.is_empty());
    holder
        .execute("SELECT pg_advisory_unlock($1)", &[&LOCK_KEY])
        .await?;
    h.invoke(&[("DB_LOCK_TIMEOUT_S", "1")], json!({})).await?;
    // A successful run does not keep the lock.
    let free: bool = holder
        .query_one("SELECT pg_try_advisory_lock($1)", &[&LOCK_KEY])
        .await?
        .get(0);
    assert!(free);
    Ok(())
}
