//! Drift against real PostgreSQL (Docker 17 and the local 15 binaries): `sql/schema.txt` is what
//! `sql/` produces on either version, verifies clean on a migrated, an adopted and a populated and
//! vacuumed database, and every kind of hand edit fails `verify` naming the object and what differs.

use init_fn::{
    engine::run::Migration, schema::catalog::Catalog, schema::drift::Drift, schema::model::Schema,
};
use serde_json::{Value, json};
use tests::harness::{self, DB, Harness, SEED_DDL, with_extra};
use xtask::local::postgres::PgChoice;

/// Objects 0001 has none of, so hand edits of every kind have something to edit.
const MORE_KINDS: &str = "ALTER TABLE documents ADD CONSTRAINT documents_score_check CHECK (validation_score >= 0);
CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.updated_at := now(); RETURN NEW; END $$;
CREATE TRIGGER documents_touch BEFORE UPDATE ON documents FOR EACH ROW EXECUTE FUNCTION touch();
CREATE VIEW pending_documents AS SELECT id, s3_key FROM documents WHERE status = 'pending';
";

/// (hand edit made with psql, what `verify`'s message must say, the drifted object's kind and name).
const EDITS: &[(&str, &str, &str, &str)] = &[
    (
        "ALTER TABLE documents ALTER COLUMN status DROP DEFAULT",
        "column documents.status: character varying(50) default 'pending'::character varying expected, character varying(50) found",
        "column",
        "documents.status",
    ),
    (
        "ALTER TABLE documents ALTER COLUMN file_name DROP NOT NULL",
        "column documents.file_name: character varying(255) not null expected, character varying(255) found",
        "column",
        "documents.file_name",
    ),
    (
        "ALTER TABLE documents ADD COLUMN hotfix text",
        "column documents.hotfix: not expected, found text",
        "column",
        "documents.hotfix",
    ),
    (
        "ALTER TABLE documents ALTER COLUMN file_size TYPE bigint",
        "column documents.file_size: integer expected, bigint found",
        "column",
        "documents.file_size",
    ),
    (
        "DROP INDEX idx_documents_status; CREATE INDEX idx_documents_status ON documents (status, document_type)",
        "index documents.idx_documents_status: CREATE INDEX idx_documents_status ON public.documents USING btree (status) expected, CREATE INDEX idx_documents_status ON public.documents USING btree (status, document_type) found",
        "index",
        "documents.idx_documents_status",
    ),
    (
        "DROP INDEX idx_logs_agent",
        "index processing_logs.idx_logs_agent: CREATE INDEX idx_logs_agent ON public.processing_logs USING btree (agent_name) expected, none found",
        "index",
        "processing_logs.idx_logs_agent",
    ),
    (
        "ALTER TABLE processing_logs DROP CONSTRAINT processing_logs_document_id_fkey",
        "constraint processing_logs.processing_logs_document_id_fkey: FOREIGN KEY (document_id) REFERENCES documents(id) expected, none found",
        "constraint",
        "processing_logs.processing_logs_document_id_fkey",
    ),
    (
        "ALTER TABLE documents DROP CONSTRAINT documents_score_check",
        "constraint documents.documents_score_check: CHECK ((validation_score >= (0)::double precision)) expected, none found",
        "constraint",
        "documents.documents_score_check",
    ),
    (
        "DROP TRIGGER documents_touch ON documents",
        "trigger documents.documents_touch: CREATE TRIGGER documents_touch BEFORE UPDATE ON public.documents FOR EACH ROW EXECUTE FUNCTION touch() expected, none found",
        "trigger",
        "documents.documents_touch",
    ),
    (
        "ALTER TABLE documents DISABLE TRIGGER documents_touch",
        "EXECUTE FUNCTION touch() DISABLED found",
        "trigger",
        "documents.documents_touch",
    ),
    (
        "DROP VIEW pending_documents",
        "view pending_documents: SELECT id, s3_key FROM documents WHERE ((status)::text = 'pending'::text); expected, none found",
        "view",
        "pending_documents",
    ),
    (
        "CREATE OR REPLACE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$",
        "function touch(): returns trigger language plpgsql body md5 ",
        "function",
        "touch()",
    ),
    (
        "DROP TABLE processing_logs",
        "table processing_logs is missing",
        "table",
        "processing_logs",
    ),
];

/// The canonical schema of `db` as the function reads it.
async fn reading(h: &Harness, db: &str) -> anyhow::Result<Schema> {
    let client = h.client(db).await?;
    let catalog = Catalog::read(&client, init_fn::engine::ledger::LEDGER_TABLE)
        .await
        .map_err(|e| anyhow::anyhow!("{}: {}", e.query, e.source))?;
    Ok(catalog.schema())
}

/// The committed file is what sql/ produces on this server, and three databases verify clean
/// against it: migrated by init-fn, built by the original's DDL then adopted, populated and vacuumed.
async fn clean_cases(h: &Harness) -> anyhow::Result<()> {
    let generated = xtask::schema::generate(&h.pg, &harness::root().join("sql")).await?;
    let committed = std::fs::read_to_string(harness::root().join(xtask::schema::SCHEMA_FILE))?;
    xtask::schema::check(Some(&committed), &generated)?;

    let applied = h.invoke(&[], json!({})).await?;
    assert_eq!(applied["drift"], json!([]), "{applied:#}");
    let verified = h.invoke(&[], json!({"action": "verify"})).await?;
    assert_eq!(verified["drift"], json!([]), "{verified:#}");

    h.pg.create_database("seed_db").await?;
    h.client("seed_db").await?.batch_execute(SEED_DDL).await?;
    let adopt = [("DB_NAME", "seed_db")];
    let adopted = h.invoke(&adopt, json!({})).await?;
    assert_eq!(harness::states(&adopted), ["adopted"]);
    assert_eq!(adopted["drift"], json!([]), "{adopted:#}");

    let client = h.client(DB).await?;
    client
        .batch_execute(
            "INSERT INTO documents (s3_key, document_type, file_name, status) \
               SELECT 'k' || g, 'invoice', 'f' || g, 'done' FROM generate_series(1, 500) g; \
             INSERT INTO processing_logs (document_id, agent_name, action, status) \
               SELECT id, 'extractor', 'extract', 'ok' FROM documents",
        )
        .await?;
    client.batch_execute("VACUUM ANALYZE").await?;
    for db in [DB, "seed_db"] {
        let report = h
            .invoke(&[("DB_NAME", db)], json!({"action": "verify"}))
            .await?;
        assert_eq!(report["drift"], json!([]), "{db}: {report:#}");
    }
    Ok(())
}

#[tokio::test]
async fn the_schema_file_verifies_clean_on_docker() -> anyhow::Result<()> {
    let h = Harness::start(&harness::docker_or_fallback().await?).await?;
    clean_cases(&h).await
}

#[tokio::test]
async fn the_schema_file_verifies_clean_on_the_local_cluster() -> anyhow::Result<()> {
    let h = Harness::start(&PgChoice::Local).await?;
    clean_cases(&h).await
}

/// Edits that undo objects another edit changes run on a second database.
const SECOND_DATABASE: &[&str] = &[
    "DROP TABLE processing_logs",
    "ALTER TABLE documents DISABLE TRIGGER documents_touch",
];

#[tokio::test]
async fn every_kind_of_hand_edit_fails_verify_naming_the_object() -> anyhow::Result<()> {
    let h = Harness::from_env().await?;
    let migrations: Vec<Migration> = with_extra(&[(2, "more_kinds", MORE_KINDS)]);
    h.invoke(&[], json!({})).await?;
    harness::invoke(&h.state(&[], migrations.clone()), json!({})).await?;
    let expected = reading(&h, DB).await?;
    let state = |db: &str, extra: &[(&str, &str)]| {
        let mut env = vec![("DB_NAME", db)];
        env.extend_from_slice(extra);
        h.state(&env, migrations.clone())
            .with_expected(Some(expected.clone()))
    };
    for (db, second) in [("edited_1", false), ("edited_2", true)] {
        let edits: Vec<_> = EDITS
            .iter()
            .filter(|e| SECOND_DATABASE.contains(&e.0) == second)
            .collect();
        h.pg.create_database(db).await?;
        let clean = harness::invoke(&state(db, &[]), json!({})).await?;
        assert_eq!(clean["drift"], json!([]), "{db}: {clean:#}");
        for (edit, ..) in &edits {
            h.client(db).await?.batch_execute(edit).await?;
        }
        let err = harness::invoke(&state(db, &[]), json!({"action": "verify"}))
            .await
            .unwrap_err();
        assert_eq!(err.error_type(), "Verify", "{db}: {err}");
        // plan and status count the drift without failing; each difference says what and where.
        for action in ["status", "plan"] {
            let report = harness::invoke(&state(db, &[]), json!({ "action": action })).await?;
            let drift: Vec<Drift> = report["drift"]
                .as_array()
                .unwrap_or_else(|| panic!("drift was not compared: {report:#}"))
                .iter()
                .map(|d| Drift {
                    object: d["object"].as_str().unwrap().into(),
                    kind: d["kind"].as_str().unwrap().into(),
                    expected: d["expected"].as_str().map(String::from),
                    found: d["found"].as_str().map(String::from),
                })
                .collect();
            let summary = init_fn::schema::drift::summary(&drift);
            assert!(
                err.one_line().contains(&summary),
                "{db}: verify: {err}\n{summary}"
            );
            let note = format!("drift: {summary}");
            assert!(
                report["notes"].as_array().unwrap().contains(&json!(note)),
                "{db}: {action}: {report:#}"
            );
            for (edit, message, kind, object) in &edits {
                let d = drift
                    .iter()
                    .find(|d| d.kind == *kind && d.object == *object)
                    .unwrap_or_else(|| {
                        panic!("{edit}: {action}: no drift of {kind} {object}: {report:#}")
                    });
                assert!(d.describe().contains(message), "{edit}: {}", d.describe());
            }
        }
    }

    // apply on a drifted database says so and applies; DB_DRIFT=fail stops before changing anything.
    let db = "edited_2";
    let warn = harness::invoke(&state(db, &[]), json!({})).await?;
    assert_eq!(warn["status"], "ok");
    let before = format!(
        "drift: {} differences before applying",
        warn["drift"].as_array().unwrap().len()
    );
    assert!(
        warn["notes"].as_array().unwrap().contains(&json!(before)),
        "{warn:#}"
    );
    let err = harness::invoke(&state(db, &[("DB_DRIFT", "fail")]), json!({}))
        .await
        .unwrap_err();
    assert_eq!(err.error_type(), "Verify", "{err}");
    assert!(err.one_line().starts_with("DB_DRIFT=fail: "), "{err}");
    assert!(err.one_line().ends_with("nothing was changed"), "{err}");
    Ok(())
}

#[tokio::test]
async fn an_invalid_index_from_a_failed_concurrent_build_is_drift() -> anyhow::Result<()> {
    let h = Harness::from_env().await?;
    h.invoke(&[], json!({})).await?;
    let client = h.client(DB).await?;
    client
        .batch_execute("INSERT INTO documents (s3_key, document_type, file_name) VALUES ('a', 't', 'same'), ('b', 't', 'same')")
        .await?;
    let failed = client
        .batch_execute(
            "CREATE UNIQUE INDEX CONCURRENTLY idx_documents_file_name ON documents (file_name)",
        )
        .await;
    assert!(failed.is_err(), "duplicate rows must fail the unique build");
    let err = h
        .invoke(&[], json!({"action": "verify"}))
        .await
        .unwrap_err();
    assert_eq!(err.error_type(), "Verify");
    assert!(
        err.one_line().contains(
            "index idx_documents_file_name on documents is INVALID (a failed or cancelled CREATE INDEX CONCURRENTLY): DROP INDEX CONCURRENTLY it and re-run, or REINDEX INDEX CONCURRENTLY"
        ),
        "{err}"
    );
    let status = h.invoke(&[], json!({"action": "status"})).await?;
    let drift = &status["drift"][0];
    assert_eq!(
        drift["object"], "documents.idx_documents_file_name",
        "{status:#}"
    );
    assert_eq!(drift["expected"], Value::Null);
    assert!(
        drift["found"].as_str().unwrap().ends_with(" INVALID"),
        "{status:#}"
    );
    Ok(())
}

#[tokio::test]
async fn a_migration_changed_without_regenerating_fails_the_check_with_the_diff()
-> anyhow::Result<()> {
    let h = Harness::from_env().await?;
    let dir = tempfile::tempdir()?;
    std::fs::copy(
        harness::root().join("sql/0001_initial_schema.sql"),
        dir.path().join("0001_initial_schema.sql"),
    )?;
    std::fs::write(
        dir.path().join("0002_reviewed.sql"),
        "ALTER TABLE documents ADD COLUMN reviewed boolean NOT NULL DEFAULT false;\n",
    )?;
    let generated = xtask::schema::generate(&h.pg, dir.path()).await?;
    let committed = std::fs::read_to_string(harness::root().join(xtask::schema::SCHEMA_FILE))?;
    let err = xtask::schema::check(Some(&committed), &generated)
        .unwrap_err()
        .to_string();
    assert!(err.contains("sql/schema.txt is stale"), "{err}");
    assert!(
        err.contains("\n+column documents.reviewed: boolean not null default false\n"),
        "{err}"
    );
    assert!(
        err.contains("refresh it with `cargo xtask schema`"),
        "{err}"
    );
    Ok(())
}

/// Every object kind drift reads, beyond what 0001 has.
const EVERY_KIND: &str = "CREATE TYPE review_state AS ENUM ('new', 'done');
CREATE DOMAIN score AS double precision NOT NULL DEFAULT 0 CHECK (VALUE >= 0);
CREATE TYPE page_range AS (first integer, last integer);
CREATE TYPE float_range AS RANGE (subtype = float8);
CREATE SEQUENCE batch_seq AS bigint INCREMENT 5 CACHE 10 CYCLE;
CREATE TABLE reviews (
    id integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    document_id integer REFERENCES documents (id) ON DELETE CASCADE,
    state review_state NOT NULL DEFAULT 'new',
    note text COLLATE \"C\",
    points score,
    doubled double precision GENERATED ALWAYS AS (validation * 2) STORED,
    validation double precision,
    CHECK (document_id > 0),
    EXCLUDE USING btree (document_id WITH =) WHERE (state = 'new')
);
ALTER TABLE reviews ADD CONSTRAINT reviews_points_check CHECK (points < 100) NOT VALID;
CREATE INDEX reviews_note_idx ON reviews (lower(note)) WHERE note IS NOT NULL;
CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.updated_at := now(); RETURN NEW; END $$;
CREATE FUNCTION doubled(x integer) RETURNS integer LANGUAGE sql IMMUTABLE BEGIN ATOMIC SELECT x * 2; END;
CREATE PROCEDURE forget(days integer) LANGUAGE plpgsql AS $$ BEGIN DELETE FROM processing_logs WHERE id < days; END $$;
CREATE AGGREGATE total(integer) (SFUNC = int4pl, STYPE = integer);
CREATE TRIGGER documents_touch BEFORE UPDATE OF status ON documents FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status) EXECUTE FUNCTION touch();
CREATE VIEW pending_documents AS SELECT d.id, d.s3_key, count(l.id) AS logs FROM documents d LEFT JOIN processing_logs l ON l.document_id = d.id WHERE d.status = 'pending' GROUP BY d.id;
CREATE MATERIALIZED VIEW document_counts AS SELECT status, count(*) AS n FROM documents GROUP BY status;
CREATE EXTENSION IF NOT EXISTS pg_trgm;
";

#[tokio::test]
async fn every_object_kind_reads_the_same_on_postgresql_15_and_17_but_one_table_views()
-> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    std::fs::copy(
        harness::root().join("sql/0001_initial_schema.sql"),
        dir.path().join("0001_initial_schema.sql"),
    )?;
    std::fs::write(dir.path().join("0002_every_kind.sql"), EVERY_KIND)?;
    let mut texts = Vec::new();
    for choice in [harness::docker_or_fallback().await?, PgChoice::Local] {
        let pg = xtask::local::postgres::PgServer::start(&choice).await?;
        let version = pg.server_version().await?;
        texts.push((version, xtask::schema::generate(&pg, dir.path()).await?));
        pg.stop().await?;
    }
    let [(v17, a), (v15, b)] = &texts[..] else {
        unreachable!()
    };
    let only = |x: &str, y: &str| -> Vec<String> {
        x.lines()
            .filter(|l| !y.lines().any(|m| m == *l))
            .map(String::from)
            .collect()
    };
    // Measured: PostgreSQL 15 qualifies the columns of a one-table view (`documents.status`), 16 and
    // later do not; everything else reads the same. The README says to generate on production's major.
    assert_eq!(
        (only(a, b), only(b, a)),
        (
            vec![
                "materialized_view document_counts:  SELECT status,".to_string(),
                "    GROUP BY status;".to_string()
            ],
            vec![
                "materialized_view document_counts:  SELECT documents.status,".to_string(),
                "    GROUP BY documents.status;".to_string()
            ]
        ),
        "{v17} vs {v15}"
    );
    for kind in [
        "enum",
        "domain",
        "composite_type",
        "range_type",
        "sequence batch_seq",
        "view",
        "materialized_view",
        "function doubled",
        "procedure",
        "aggregate",
        "trigger",
        "extension pg_trgm",
        "collate \"C\"",
        "NOT VALID",
        "EXCLUDE",
    ] {
        assert!(a.contains(kind), "{kind}: {a}");
    }
    Ok(())
}
