//! `plan`'s locks checked against PostgreSQL itself. Each statement of a lock corpus runs on a real
//! server, PostgreSQL 15 (local binaries) and 17 (Docker), and the strongest lock `pg_locks` shows on
//! each table that existed before it must equal what `plan` predicts (`locks::classify`, resolved
//! against the catalog as the plan action does). Statements run inside `BEGIN … ROLLBACK` and
//! `pg_locks` is read in the same transaction; those that cannot run in a transaction block
//! (CONCURRENTLY, VACUUM) run in a second session while a third holds a table lock they wait for,
//! and `pg_locks` is read from the test's session while they wait.

use std::collections::BTreeMap;

use init_fn::plan::locks::{self, LockMode};
use tokio_postgres::Client;
use xtask::local::postgres::{PgChoice, PgServer};

/// The schema the corpus runs on: 0001 plus a trigger, a NOT VALID check, a table with an
/// `ON DELETE CASCADE` foreign key, a partitioned table, a view and a materialized view; a few rows.
const FIXTURE: &str = "
CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.updated_at := now(); RETURN NEW; END $$;
CREATE FUNCTION unused() RETURNS int LANGUAGE plpgsql AS $$ BEGIN RETURN 1; END $$;
CREATE PROCEDURE noop() LANGUAGE plpgsql AS $$ BEGIN END $$;
CREATE TYPE document_kind AS ENUM ('invoice', 'receipt');
CREATE DOMAIN positive AS integer CHECK (VALUE > 0);
CREATE SEQUENCE batch_seq;
CREATE SCHEMA archive;
CREATE TABLE notes (id integer, body text);
CREATE POLICY readers ON notes USING (true);
CREATE RULE notes_keep AS ON DELETE TO notes DO INSTEAD NOTHING;
CREATE TRIGGER documents_touch BEFORE UPDATE ON documents FOR EACH ROW EXECUTE FUNCTION touch();
ALTER TABLE processing_logs ADD CONSTRAINT logs_status_known CHECK (status <> '') NOT VALID;
CREATE TABLE reviews (id serial PRIMARY KEY, document_id integer, note text);
ALTER TABLE reviews ADD CONSTRAINT reviews_document_fk FOREIGN KEY (document_id) REFERENCES documents (id) ON DELETE CASCADE NOT VALID;
CREATE TABLE events (id integer, at date NOT NULL, payload text) PARTITION BY RANGE (at);
CREATE TABLE events_2025 PARTITION OF events FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
CREATE TABLE events_2026 (id integer, at date NOT NULL, payload text);
CREATE VIEW pending_documents AS SELECT id, s3_key FROM documents WHERE status = 'pending';
CREATE MATERIALIZED VIEW document_counts AS SELECT status, count(*) AS n FROM documents GROUP BY status;
CREATE UNIQUE INDEX document_counts_status ON document_counts (status);
INSERT INTO documents (s3_key, document_type, file_name, file_size) VALUES ('raw/1.pdf', 'invoice', '1.pdf', 10), ('raw/2.pdf', 'invoice', '2.pdf', 20);
INSERT INTO processing_logs (document_id, agent_name, action, status) VALUES (1, 'extractor', 'extract', 'ok');
INSERT INTO reviews (document_id, note) VALUES (1, 'fine');
";

/// Statements run inside `BEGIN … ROLLBACK`, each on the fixture as it is.
const IN_TRANSACTION: &[&str] = &[
    // ALTER TABLE, every form plan classifies
    "ALTER TABLE documents ADD COLUMN reviewed boolean NOT NULL DEFAULT false",
    "ALTER TABLE documents ADD COLUMN IF NOT EXISTS review_id integer REFERENCES reviews (id)",
    "ALTER TABLE documents DROP COLUMN error_message",
    "ALTER TABLE documents DROP COLUMN IF EXISTS nothing_here",
    "ALTER TABLE documents ALTER COLUMN file_size TYPE bigint",
    "ALTER TABLE documents ALTER COLUMN file_size SET DATA TYPE bigint USING file_size::bigint",
    "ALTER TABLE documents ALTER COLUMN status SET DEFAULT 'new'",
    "ALTER TABLE documents ALTER status DROP DEFAULT",
    "ALTER TABLE documents ALTER COLUMN file_size SET NOT NULL",
    "ALTER TABLE documents ALTER COLUMN document_type DROP NOT NULL",
    "ALTER TABLE documents ALTER COLUMN status SET STATISTICS 500",
    "ALTER TABLE documents ALTER COLUMN status SET (n_distinct = 10)",
    "ALTER TABLE documents ALTER COLUMN status RESET (n_distinct)",
    "ALTER TABLE documents ALTER COLUMN error_message SET STORAGE EXTERNAL",
    "ALTER TABLE processing_logs ADD CONSTRAINT logs_document_fk FOREIGN KEY (document_id) REFERENCES documents (id) NOT VALID",
    "ALTER TABLE processing_logs ADD FOREIGN KEY (document_id) REFERENCES documents (id)",
    "ALTER TABLE processing_logs VALIDATE CONSTRAINT logs_status_known",
    "ALTER TABLE reviews VALIDATE CONSTRAINT reviews_document_fk",
    "ALTER TABLE documents ADD CONSTRAINT documents_size_positive CHECK (file_size > 0)",
    "ALTER TABLE documents ADD CONSTRAINT documents_size_positive CHECK (file_size > 0) NOT VALID",
    "ALTER TABLE documents ADD CONSTRAINT documents_file_name_key UNIQUE (file_name)",
    "ALTER TABLE events_2026 ADD PRIMARY KEY (id, at)",
    "ALTER TABLE processing_logs DROP CONSTRAINT processing_logs_document_id_fkey",
    "ALTER TABLE processing_logs DROP CONSTRAINT IF EXISTS logs_status_known",
    "ALTER TABLE reviews ALTER CONSTRAINT reviews_document_fk DEFERRABLE",
    "ALTER TABLE documents RENAME COLUMN file_name TO original_name",
    "ALTER TABLE documents RENAME TO files",
    "ALTER TABLE processing_logs RENAME CONSTRAINT logs_status_known TO logs_status_set",
    "ALTER TABLE documents DISABLE TRIGGER documents_touch",
    "ALTER TABLE documents ENABLE TRIGGER USER",
    "ALTER TABLE documents CLUSTER ON idx_documents_status",
    "ALTER TABLE documents SET WITHOUT CLUSTER",
    "ALTER TABLE documents SET (fillfactor = 90)",
    "ALTER TABLE documents RESET (fillfactor)",
    "ALTER TABLE documents SET (autovacuum_vacuum_scale_factor = 0.05)",
    "ALTER TABLE events_2026 SET UNLOGGED",
    "ALTER TABLE documents SET TABLESPACE pg_default",
    "ALTER TABLE documents OWNER TO CURRENT_USER",
    "ALTER TABLE documents REPLICA IDENTITY FULL",
    "ALTER TABLE documents ENABLE ROW LEVEL SECURITY",
    "ALTER TABLE events ATTACH PARTITION events_2026 FOR VALUES FROM ('2026-01-01') TO ('2027-01-01')",
    "ALTER TABLE events DETACH PARTITION events_2025",
    "ALTER TABLE documents ADD COLUMN pages integer, ALTER COLUMN status SET STATISTICS 100",
    "ALTER TABLE IF EXISTS ONLY public.documents ALTER COLUMN status SET DEFAULT 'queued'",
    "ALTER TABLE events_2026 ALTER COLUMN id SET NOT NULL, ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY",
    "ALTER TABLE events_2026 SET LOGGED",
    "ALTER TABLE events_2026 SET SCHEMA archive",
    "ALTER TABLE documents FORCE ROW LEVEL SECURITY",
    "ALTER TABLE notes DISABLE RULE notes_keep",
    // CREATE
    "CREATE INDEX idx_documents_file_name ON documents (file_name)",
    "CREATE UNIQUE INDEX IF NOT EXISTS idx_documents_key_id ON public.documents (s3_key, id)",
    "CREATE INDEX ON ONLY events (at)",
    "CREATE TRIGGER logs_touch BEFORE UPDATE ON processing_logs FOR EACH ROW EXECUTE FUNCTION touch()",
    "CREATE OR REPLACE TRIGGER documents_touch BEFORE UPDATE ON documents FOR EACH ROW EXECUTE FUNCTION touch()",
    "CREATE CONSTRAINT TRIGGER documents_check AFTER INSERT ON documents DEFERRABLE FOR EACH ROW EXECUTE FUNCTION touch()",
    "CREATE TABLE attachments (id serial PRIMARY KEY, document_id integer NOT NULL REFERENCES documents (id))",
    "CREATE TABLE IF NOT EXISTS documents_archive (LIKE documents INCLUDING ALL)",
    "CREATE TABLE events_2027 PARTITION OF events FOR VALUES FROM ('2027-01-01') TO ('2028-01-01')",
    "CREATE TABLE documents_child () INHERITS (documents)",
    "CREATE POLICY own_rows ON documents USING (true)",
    "CREATE RULE logs_keep AS ON DELETE TO processing_logs DO INSTEAD NOTHING",
    "CREATE FUNCTION bump(i integer) RETURNS integer LANGUAGE plpgsql AS $$ BEGIN RETURN i + 1; END $$",
    "CREATE OR REPLACE PROCEDURE noop() LANGUAGE plpgsql AS $$ BEGIN NULL; END $$",
    "CREATE TYPE document_state AS ENUM ('new', 'done')",
    "CREATE DOMAIN score AS double precision CHECK (VALUE >= 0)",
    "CREATE SEQUENCE ticket_seq",
    "CREATE SCHEMA audit",
    // DROP
    "DROP TABLE events_2026",
    "DROP TABLE reviews",
    "DROP TABLE IF EXISTS processing_logs",
    "DROP INDEX idx_documents_status",
    "DROP INDEX IF EXISTS idx_logs_agent, idx_documents_type",
    "DROP TRIGGER documents_touch ON documents",
    "DROP VIEW pending_documents",
    "DROP MATERIALIZED VIEW document_counts",
    "DROP FUNCTION unused()",
    "DROP PROCEDURE noop()",
    "DROP TYPE document_kind",
    "DROP DOMAIN positive",
    "DROP SEQUENCE batch_seq",
    "DROP SCHEMA archive",
    "DROP POLICY readers ON notes",
    "DROP RULE notes_keep ON notes",
    // COMMENT, GRANT
    "COMMENT ON TABLE documents IS 'uploaded files'",
    "COMMENT ON COLUMN documents.status IS 'pipeline state'",
    "COMMENT ON COLUMN public.documents.status IS 'pipeline state'",
    "COMMENT ON INDEX idx_documents_status IS 'by state'",
    "COMMENT ON CONSTRAINT logs_status_known ON processing_logs IS 'set'",
    "COMMENT ON TRIGGER documents_touch ON documents IS 'keeps updated_at'",
    "COMMENT ON VIEW pending_documents IS 'queue'",
    "COMMENT ON MATERIALIZED VIEW document_counts IS 'per state'",
    "COMMENT ON FUNCTION touch() IS 'trigger'",
    "COMMENT ON PROCEDURE noop() IS 'nothing'",
    "COMMENT ON TYPE document_kind IS 'kinds'",
    "COMMENT ON DOMAIN positive IS 'over zero'",
    "COMMENT ON SCHEMA archive IS 'old rows'",
    "COMMENT ON SEQUENCE documents_id_seq IS 'ids'",
    "COMMENT ON EXTENSION plpgsql IS 'PL/pgSQL'",
    "GRANT SELECT ON documents TO PUBLIC",
    "GRANT SELECT, INSERT ON TABLE documents, processing_logs TO PUBLIC",
    "REVOKE ALL ON documents FROM PUBLIC",
    // REFRESH, ANALYZE, TRUNCATE, REINDEX, CLUSTER, LOCK
    "REFRESH MATERIALIZED VIEW document_counts",
    "REFRESH MATERIALIZED VIEW CONCURRENTLY document_counts",
    "ANALYZE documents",
    "ANALYZE processing_logs (agent_name)",
    "TRUNCATE events_2026",
    "TRUNCATE TABLE documents, processing_logs, reviews",
    "TRUNCATE documents CASCADE",
    "REINDEX INDEX idx_documents_status",
    "REINDEX TABLE processing_logs",
    "CLUSTER documents USING idx_documents_status",
    "LOCK TABLE documents IN SHARE ROW EXCLUSIVE MODE",
    "LOCK documents, processing_logs IN ACCESS SHARE MODE",
    // DML, with the foreign keys' row checks and actions
    "INSERT INTO documents (s3_key, document_type, file_name) VALUES ('raw/3.pdf', 'invoice', '3.pdf')",
    "INSERT INTO processing_logs (document_id, agent_name, action, status) VALUES (1, 'a', 'b', 'c')",
    "INSERT INTO processing_logs (document_id, agent_name, action, status) SELECT id, 'a', 'b', 'c' FROM documents",
    "UPDATE documents SET status = 'done' WHERE id = 1",
    "UPDATE processing_logs SET document_id = 2 WHERE id = 1",
    "UPDATE documents SET id = 100 WHERE id = 2",
    "UPDATE documents d SET status = l.status FROM processing_logs l WHERE l.document_id = d.id",
    "DELETE FROM documents WHERE id = 2",
    "DELETE FROM processing_logs WHERE agent_name = 'nobody'",
    "SET search_path = public",
    "RESET search_path",
    "NOTIFY documents_changed",
    "LISTEN documents_changed",
];

/// Statements that cannot run in a transaction block: (statement, table a holder locks, its mode).
/// The holder's lock makes the statement wait (for the lock, or for the holder's transaction to end)
/// while `pg_locks` is read. They change the fixture, so they run after [`IN_TRANSACTION`].
const BESIDE_A_HOLDER: &[(&str, &str, &str)] = &[
    (
        "CREATE INDEX CONCURRENTLY idx_documents_file_name ON documents (file_name)",
        "documents",
        "ROW EXCLUSIVE",
    ),
    (
        "REINDEX INDEX CONCURRENTLY idx_documents_status",
        "documents",
        "ROW EXCLUSIVE",
    ),
    (
        "DROP INDEX CONCURRENTLY IF EXISTS idx_documents_s3_key",
        "documents",
        "ROW EXCLUSIVE",
    ),
    ("VACUUM documents", "documents", "SHARE UPDATE EXCLUSIVE"),
    (
        "VACUUM (ANALYZE) processing_logs",
        "processing_logs",
        "SHARE UPDATE EXCLUSIVE",
    ),
    (
        "VACUUM FULL documents",
        "documents",
        "SHARE UPDATE EXCLUSIVE",
    ),
    // Its wait for other transactions comes between two transactions that hold nothing: make it
    // wait for the partition's lock instead, with the parent's already taken.
    (
        "ALTER TABLE events DETACH PARTITION events_2025 CONCURRENTLY",
        "events_2025",
        "SHARE UPDATE EXCLUSIVE",
    ),
];

/// Statement kinds plan does not classify: it says `lock unknown` rather than guess.
const UNKNOWN: &[&str] = &[
    "CREATE VIEW recent AS SELECT * FROM documents",
    "CREATE MATERIALIZED VIEW m AS SELECT 1",
    "CREATE TABLE copy AS SELECT * FROM documents",
    "CREATE FUNCTION one() RETURNS int LANGUAGE sql AS 'SELECT count(*)::int FROM documents'",
    "CREATE FUNCTION one() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; END",
    "CREATE EXTENSION IF NOT EXISTS pgcrypto",
    "DO $$ BEGIN PERFORM 1; END $$",
    "SELECT setval('documents_id_seq', 10)",
    "WITH gone AS (DELETE FROM processing_logs RETURNING document_id) DELETE FROM documents WHERE id IN (SELECT document_id FROM gone)",
    "VACUUM",
    "DROP TABLE documents CASCADE",
    "ALTER TABLE documents INHERIT events_2026",
    "ALTER INDEX idx_documents_status RENAME TO idx_status",
    "COPY documents FROM STDIN",
];

/// Relation kinds whose locks are compared: tables, partitioned tables, views, materialized views.
const PRE_EXISTING: &str = "SELECT c.oid, c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
     WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm', 'f')";

type Locks = Vec<(String, LockMode)>;

async fn tables(client: &Client) -> anyhow::Result<BTreeMap<u32, String>> {
    Ok(client
        .query(PRE_EXISTING, &[])
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect())
}

/// The strongest mode per pre-existing table among `pid`'s relation locks (granted or awaited).
async fn observed(
    client: &Client,
    pid: Option<i32>,
    of: &BTreeMap<u32, String>,
) -> anyhow::Result<Locks> {
    let oids: Vec<u32> = of.keys().copied().collect();
    let rows = client
        .query(
            "SELECT l.relation, l.mode FROM pg_locks l WHERE l.locktype = 'relation' \
             AND l.pid = coalesce($1, pg_backend_pid()) AND l.relation = ANY($2)",
            &[&pid, &oids],
        )
        .await?;
    let mut strongest: BTreeMap<String, LockMode> = BTreeMap::new();
    for r in rows {
        let (oid, mode): (u32, String) = (r.get(0), r.get(1));
        let mode = LockMode::from_pg_locks(&mode).unwrap_or_else(|| panic!("pg_locks mode {mode}"));
        let m = strongest.entry(of[&oid].clone()).or_insert(mode);
        *m = (*m).max(mode);
    }
    Ok(strongest.into_iter().collect())
}

/// What plan says, resolved on the schema as it is before the statement.
async fn predicted(client: &Client, statement: &str) -> anyhow::Result<Locks> {
    let effect = locks::classify(statement);
    assert!(effect.known, "plan does not classify `{statement}`");
    let mut locks = init_fn::engine::pending::locked_tables(client, &effect).await?;
    locks.sort();
    Ok(locks)
}

fn show(locks: &Locks) -> String {
    let all: Vec<String> = locks.iter().map(|(t, m)| format!("{m} on {t}")).collect();
    if all.is_empty() {
        "no table lock".to_string()
    } else {
        all.join(", ")
    }
}

async fn in_transaction(client: &Client, statement: &str) -> anyhow::Result<Result<Locks, String>> {
    let before = tables(client).await?;
    client.batch_execute("BEGIN").await?;
    let locks = match client.batch_execute(statement).await {
        Ok(()) => Ok(observed(client, None, &before).await?),
        Err(e) => Err(format!(
            "{statement}: {}",
            e.as_db_error()
                .map_or(e.to_string(), |d| d.message().to_string())
        )),
    };
    client.batch_execute("ROLLBACK").await?;
    Ok(locks)
}

async fn beside_a_holder(
    pg: &PgServer,
    db: &str,
    observer: &Client,
    statement: &str,
    table: &str,
    mode: &str,
) -> anyhow::Result<Result<Locks, String>> {
    let before = tables(observer).await?;
    let holder = pg.client(db).await?;
    holder
        .batch_execute(&format!("BEGIN; LOCK TABLE {table} IN {mode} MODE"))
        .await?;
    let session = pg.client(db).await?;
    let pid: i32 = session
        .query_one("SELECT pg_backend_pid()", &[])
        .await?
        .get(0);
    let sql = statement.to_string();
    let run =
        tokio::spawn(async move { session.batch_execute(&sql).await.map_err(|e| e.to_string()) });
    // Bounded so a statement that never waits fails the test instead of hanging it.
    let mut waiting = false;
    for _ in 0..3000 {
        let row = observer
            .query_one("SELECT coalesce(wait_event_type = 'Lock', false) FROM pg_stat_activity WHERE pid = $1", &[&pid])
            .await?;
        if row.get(0) {
            waiting = true;
            break;
        }
        if run.is_finished() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let locks = if waiting {
        Ok(observed(observer, Some(pid), &before).await?)
    } else {
        Err(format!(
            "{statement}: never waited for the holder's {mode} lock on {table}"
        ))
    };
    holder.batch_execute("ROLLBACK").await?;
    let finished = run.await?;
    Ok(match (locks, finished) {
        (Ok(l), Ok(())) => Ok(l),
        (Err(e), _) => Err(e),
        (_, Err(e)) => Err(format!("{statement}: {e}")),
    })
}

async fn corpus_matches_pg_locks(choice: PgChoice) -> anyhow::Result<()> {
    let pg = PgServer::start(&choice).await?;
    let db = "locks";
    pg.create_database(db).await?;
    let client = pg.client(db).await?;
    client
        .batch_execute(&init_fn::engine::run::embedded()[0].sql)
        .await?;
    client.batch_execute(FIXTURE).await?;
    let version = pg.server_version().await?;

    let mut failures = Vec::new();
    let mut check =
        |statement: &str, predicted: Locks, observed: Result<Locks, String>| match observed {
            Ok(observed) if observed == predicted => {}
            Ok(observed) => failures.push(format!(
                "{statement}\n    plan:      {}\n    pg_locks:  {}",
                show(&predicted),
                show(&observed)
            )),
            Err(e) => failures.push(e.to_string()),
        };
    for statement in IN_TRANSACTION {
        let p = predicted(&client, statement).await?;
        check(statement, p, in_transaction(&client, statement).await?);
    }
    for (statement, table, mode) in BESIDE_A_HOLDER {
        let p = predicted(&client, statement).await?;
        check(
            statement,
            p,
            beside_a_holder(&pg, db, &client, statement, table, mode).await?,
        );
    }
    eprintln!(
        "lock corpus on PostgreSQL {version}: {} statements ({} in BEGIN … ROLLBACK, {} beside a holder), {} disagree with pg_locks",
        IN_TRANSACTION.len() + BESIDE_A_HOLDER.len(),
        IN_TRANSACTION.len(),
        BESIDE_A_HOLDER.len(),
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "PostgreSQL {version} disagrees with plan on {} statements:\n{}",
        failures.len(),
        failures.join("\n")
    );
    Ok(())
}

#[test]
fn statement_kinds_plan_does_not_classify_say_lock_unknown() {
    for statement in UNKNOWN {
        assert!(
            !locks::classify(statement).known,
            "plan claims to know the locks of `{statement}`"
        );
    }
}

#[tokio::test]
async fn lock_corpus_matches_pg_locks_on_local_postgres() -> anyhow::Result<()> {
    corpus_matches_pg_locks(PgChoice::Local).await
}

#[tokio::test]
async fn lock_corpus_matches_pg_locks_on_docker_postgres() -> anyhow::Result<()> {
    corpus_matches_pg_locks(tests::harness::docker_or_fallback().await?).await
}
