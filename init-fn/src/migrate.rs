//! The migration engine: versioned SQL files, a checksummed ledger, one session advisory lock, and one
//! transaction per migration together with its ledger row.

use std::{
    collections::{BTreeMap, HashMap},
    time::{Duration, Instant},
};

use sha2::{Digest, Sha256};
use tokio_postgres::{Client, error::SqlState};

use crate::{
    db::Canceller,
    deadline::Deadline,
    error::{InitError, one_line},
    report::{
        Action, IndexReport, MigrationReport, MigrationState, ObjectReport, Outcome, Report,
        TableReport,
    },
};

/// The ledger, in `public` beside the schema it describes.
pub const LEDGER: &str = "public._init_fn_migrations";
/// The advisory lock key every init-fn run takes: the bytes of "init-fn" as a bigint.
pub const LOCK_KEY: i64 = 0x0069_6e69_742d_666e;
/// First line that makes a migration run outside a transaction (for `CREATE INDEX CONCURRENTLY`).
pub const NO_TRANSACTION_MARKER: &str = "-- init-fn: no-transaction";

const EMBEDDED: &[(u32, &str, &str)] = include!(concat!(env!("OUT_DIR"), "/migrations.rs"));

#[derive(Debug, Clone)]
pub struct Migration {
    pub version: u32,
    pub name: String,
    pub sql: String,
    /// `sha256:<hex>` of the file's bytes.
    pub checksum: String,
    pub transactional: bool,
    /// Tables and indexes the file creates, in file order.
    pub objects: Vec<Object>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Object {
    pub kind: ObjectKind,
    pub name: String,
    /// The table an index is on.
    pub table: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectKind {
    Table,
    Index,
}

impl ObjectKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ObjectKind::Table => "table",
            ObjectKind::Index => "index",
        }
    }
}

impl Migration {
    pub fn new(version: u32, name: &str, sql: &str) -> Migration {
        let digest = Sha256::digest(sql.as_bytes());
        Migration {
            version,
            name: name.to_string(),
            sql: sql.to_string(),
            checksum: format!("sha256:{}", hex::encode(digest)),
            transactional: sql.lines().next().map(str::trim) != Some(NO_TRANSACTION_MARKER),
            objects: declared_objects(sql),
        }
    }
}

/// The migrations compiled in from `sql/`, sorted by version.
pub fn embedded() -> Vec<Migration> {
    EMBEDDED
        .iter()
        .map(|(version, name, sql)| Migration::new(*version, name, sql))
        .collect()
}

/// Settings of one run.
#[derive(Debug, Clone)]
pub struct Options {
    pub lock_timeout: Duration,
    pub statement_timeout: Duration,
    /// How long a migration statement may queue for a table lock before its attempt is rolled back.
    pub ddl_lock_timeout: Duration,
    /// The invocation's deadline: bounds the lock wait and each migration.
    pub deadline: Deadline,
    /// Cancels the running statement when the deadline comes (`None`: the statement runs on).
    pub cancel: Option<Canceller>,
    /// Stored in the ledger's `applied_by`.
    pub applied_by: String,
    /// `verify` with `"exact_counts": true`: `count(*)` every table whatever its size.
    pub exact_counts: bool,
}

/// A ledger row.
#[derive(Debug, Clone)]
struct Applied {
    name: String,
    checksum: String,
    duration_ms: Option<i64>,
}

/// Runs `action` on the connected database.
pub async fn run(
    client: &mut Client,
    migrations: &[Migration],
    action: Action,
    options: &Options,
) -> Result<Report, InitError> {
    let started = Instant::now();
    let (database, server_version) = server_facts(client).await?;
    let mut sorted = migrations.to_vec();
    sorted.sort_by_key(|m| m.version);

    if action == Action::Apply {
        lock(client, options).await?;
    }
    set_statement_timeout(client, options.statement_timeout).await?;
    let result = run_locked(client, &sorted, action, options).await;
    if action == Action::Apply {
        // Closing the session would release it too; unlock explicitly so a pooled session stays clean.
        // Bounded: after a cancel the answer must still reach Lambda before its deadline.
        let _ = tokio::time::timeout(
            options.deadline.cleanup_left(),
            client.execute("SELECT pg_advisory_unlock($1)", &[&LOCK_KEY]),
        )
        .await;
    }
    let (migrations, objects, notes) = result?;

    let (tables, indexes) = inventory(client, &sorted, options.exact_counts).await?;
    let plan = if action == Action::Plan {
        crate::pending::plan(client, &sorted, &migrations).await?
    } else {
        Vec::new()
    };
    if action == Action::Verify {
        verify(&migrations, &tables, &indexes)?;
    }
    Ok(Report {
        status: "ok",
        action,
        database,
        migrations,
        plan,
        objects,
        tables,
        indexes,
        notes: if action == Action::Verify {
            notes
        } else {
            Vec::new()
        },
        server_version,
        duration_ms: started.elapsed().as_millis() as u64,
    })
}

type Outcomes = (Vec<MigrationReport>, Vec<ObjectReport>, Vec<String>);

async fn run_locked(
    client: &mut Client,
    migrations: &[Migration],
    action: Action,
    options: &Options,
) -> Result<Outcomes, InitError> {
    let ledger_exists = if action == Action::Apply {
        ensure_ledger(client).await?;
        true
    } else {
        ledger_exists(client).await?
    };
    let applied = if ledger_exists {
        read_ledger(client).await?
    } else {
        BTreeMap::new()
    };
    check_checksums(migrations, &applied)?;

    let all_objects: Vec<&Object> = migrations.iter().flat_map(|m| &m.objects).collect();
    let before = existing(client, &all_objects).await?;
    let fresh_ledger = applied.is_empty();

    let mut reports = Vec::new();
    for m in migrations {
        if let Some(row) = applied.get(&m.version) {
            reports.push(MigrationReport {
                version: m.version,
                name: m.name.clone(),
                checksum: m.checksum.clone(),
                state: MigrationState::AlreadyApplied,
                duration_ms: row.duration_ms.map(|d| d.max(0) as u64),
            });
            continue;
        }
        if action != Action::Apply {
            reports.push(MigrationReport {
                version: m.version,
                name: m.name.clone(),
                checksum: m.checksum.clone(),
                state: MigrationState::Pending,
                duration_ms: None,
            });
            continue;
        }
        let elapsed = crate::apply::migration(client, m, options).await?;
        // Adopted: the original (or a hand) already built everything this migration declares.
        let adopted = fresh_ledger
            && !m.objects.is_empty()
            && m.objects.iter().all(|o| before.contains_key(&o.name));
        tracing::info!(
            version = m.version,
            name = %m.name,
            ms = elapsed,
            adopted,
            "migration applied"
        );
        reports.push(MigrationReport {
            version: m.version,
            name: m.name.clone(),
            checksum: m.checksum.clone(),
            state: if adopted {
                MigrationState::Adopted
            } else {
                MigrationState::Applied
            },
            duration_ms: Some(elapsed),
        });
    }

    let after = if action == Action::Apply {
        existing(client, &all_objects).await?
    } else {
        before.clone()
    };
    let mut objects = Vec::new();
    for o in all_objects {
        let outcome = if before.contains_key(&o.name) {
            Outcome::AlreadyPresent
        } else if after.contains_key(&o.name) {
            Outcome::Created
        } else {
            Outcome::Missing
        };
        objects.push(ObjectReport {
            kind: o.kind.as_str(),
            name: o.name.clone(),
            outcome,
        });
    }
    let mut notes: Vec<String> = applied
        .iter()
        .filter(|(v, _)| !migrations.iter().any(|m| m.version == **v))
        .map(|(v, row)| {
            format!(
                "ledger has migration {v} ({}) that this build does not know: a newer init-fn applied it",
                row.name
            )
        })
        .collect();
    notes.extend(duplicate_indexes(client).await?);
    Ok((reports, objects, notes))
}

async fn server_facts(client: &Client) -> Result<(String, String), InitError> {
    let row = client
        .query_one(
            "SELECT current_database(), current_setting('server_version')",
            &[],
        )
        .await
        .map_err(|e| query_error("reading the server version", e))?;
    let version: String = row.get(1);
    let short = version.split_whitespace().next().unwrap_or("").to_string();
    Ok((row.get(0), short))
}

/// A failed bookkeeping query (not a migration's own SQL).
fn query_error(what: &str, err: tokio_postgres::Error) -> InitError {
    match err.as_db_error() {
        Some(db) => InitError::Connect(one_line(&format!(
            "{what}: {} (SQLSTATE {})",
            db.message(),
            db.code().code()
        ))),
        None => InitError::Connect(one_line(&format!("{what}: {err}"))),
    }
}

/// Takes the migration lock, waiting at most `DB_LOCK_TIMEOUT_S` and never past the deadline.
async fn lock(client: &Client, options: &Options) -> Result<(), InitError> {
    let wait = options.deadline.bound(options.lock_timeout);
    let by_deadline = wait < options.lock_timeout;
    if wait < Duration::from_millis(1) {
        return Err(InitError::Timeout(format!(
            "no time left to take the migration lock: the invocation's deadline is less than {} s away (DB_DEADLINE_MARGIN_S); nothing was changed",
            options.deadline.margin().as_secs()
        )));
    }
    client
        .batch_execute(&format!(
            "SET statement_timeout = 0; SET lock_timeout = {}",
            wait.as_millis()
        ))
        .await
        .map_err(|e| query_error("setting lock_timeout", e))?;
    let locked = client
        .execute("SELECT pg_advisory_lock($1)", &[&LOCK_KEY])
        .await;
    match locked {
        Ok(_) => {}
        Err(err) if err.code() == Some(&SqlState::LOCK_NOT_AVAILABLE) && by_deadline => {
            return Err(InitError::Timeout(format!(
                "another init-fn run held the migration lock (advisory key {LOCK_KEY}) for the {:.1} s left before the invocation's deadline (minus DB_DEADLINE_MARGIN_S={} s); nothing was changed",
                wait.as_secs_f64(),
                options.deadline.margin().as_secs()
            )));
        }
        Err(err) if err.code() == Some(&SqlState::LOCK_NOT_AVAILABLE) => {
            return Err(InitError::LockTimeout(format!(
                "another init-fn run held the migration lock (advisory key {LOCK_KEY}) for more than {} s (DB_LOCK_TIMEOUT_S); nothing was changed",
                options.lock_timeout.as_secs()
            )));
        }
        Err(err) => return Err(query_error("taking the migration lock", err)),
    }
    client
        .batch_execute("SET lock_timeout = 0")
        .await
        .map_err(|e| query_error("resetting lock_timeout", e))
}

async fn set_statement_timeout(client: &Client, limit: Duration) -> Result<(), InitError> {
    client
        .batch_execute(&format!("SET statement_timeout = {}", limit.as_millis()))
        .await
        .map_err(|e| query_error("setting statement_timeout", e))
}

async fn ensure_ledger(client: &Client) -> Result<(), InitError> {
    client
        .batch_execute(&format!(
            "CREATE TABLE IF NOT EXISTS {LEDGER} (
                version integer PRIMARY KEY,
                name text NOT NULL,
                checksum text NOT NULL,
                applied_at timestamptz NOT NULL DEFAULT now(),
                duration_ms bigint,
                applied_by text NOT NULL
            )"
        ))
        .await
        .map_err(|e| query_error("creating the ledger", e))
}

async fn ledger_exists(client: &Client) -> Result<bool, InitError> {
    let row = client
        .query_one(&format!("SELECT to_regclass('{LEDGER}') IS NOT NULL"), &[])
        .await
        .map_err(|e| query_error("looking for the ledger", e))?;
    Ok(row.get(0))
}

async fn read_ledger(client: &Client) -> Result<BTreeMap<u32, Applied>, InitError> {
    let rows = client
        .query(
            &format!("SELECT version, name, checksum, duration_ms FROM {LEDGER} ORDER BY version"),
            &[],
        )
        .await
        .map_err(|e| query_error("reading the ledger", e))?;
    Ok(rows
        .iter()
        .map(|r| {
            let version: i32 = r.get(0);
            (
                version as u32,
                Applied {
                    name: r.get(1),
                    checksum: r.get(2),
                    duration_ms: r.get(3),
                },
            )
        })
        .collect())
}

fn check_checksums(
    migrations: &[Migration],
    applied: &BTreeMap<u32, Applied>,
) -> Result<(), InitError> {
    for m in migrations {
        if let Some(row) = applied.get(&m.version)
            && row.checksum != m.checksum
        {
            return Err(InitError::ChecksumMismatch(format!(
                "migration {} ({}) was applied with checksum {} but sql/{:04}_{}.sql now has {}; applied migrations must not be edited, add a new one instead; nothing was applied",
                m.version, m.name, row.checksum, m.version, m.name, m.checksum
            )));
        }
    }
    Ok(())
}

/// Which of `objects` exist in `public`: name → relkind.
async fn existing(
    client: &Client,
    objects: &[&Object],
) -> Result<HashMap<String, String>, InitError> {
    let names: Vec<&str> = objects.iter().map(|o| o.name.as_str()).collect();
    let rows = client
        .query(
            "SELECT c.relname::text, c.relkind::text FROM pg_class c \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = 'public' AND c.relname = ANY($1)",
            &[&names],
        )
        .await
        .map_err(|e| query_error("listing existing objects", e))?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// Row counts of the declared tables (see [`crate::rows`]) and presence of the declared indexes.
async fn inventory(
    client: &Client,
    migrations: &[Migration],
    exact_counts: bool,
) -> Result<(Vec<TableReport>, Vec<IndexReport>), InitError> {
    let objects: Vec<&Object> = migrations.iter().flat_map(|m| &m.objects).collect();
    let present = existing(client, &objects).await?;
    let mut tables = Vec::new();
    let mut indexes = Vec::new();
    for o in objects {
        match o.kind {
            ObjectKind::Table => {
                let rows = if present.get(&o.name).map(String::as_str) == Some("r") {
                    Some(
                        crate::rows::count(client, &o.name, exact_counts)
                            .await
                            .map_err(|e| query_error("counting rows", e))?,
                    )
                } else {
                    None
                };
                tables.push(TableReport {
                    name: o.name.clone(),
                    rows: rows.map(|r| r.rows),
                    rows_exact: rows.map(|r| r.exact),
                });
            }
            ObjectKind::Index => indexes.push(IndexReport {
                name: o.name.clone(),
                table: o.table.clone().unwrap_or_default(),
                present: present.get(&o.name).map(String::as_str) == Some("i"),
            }),
        }
    }
    Ok((tables, indexes))
}

/// Indexes in `public` that repeat another index's columns exactly (the original's `idx_documents_s3_key`).
async fn duplicate_indexes(client: &Client) -> Result<Vec<String>, InitError> {
    let rows = client
        .query(
            "SELECT a.indexrelid::regclass::text, b.indexrelid::regclass::text, a.indrelid::regclass::text \
             FROM pg_index a JOIN pg_index b \
               ON a.indrelid = b.indrelid AND a.indkey::text = b.indkey::text \
              AND a.indexrelid <> b.indexrelid AND NOT a.indisunique AND b.indisunique \
             JOIN pg_class t ON t.oid = a.indrelid JOIN pg_namespace n ON n.oid = t.relnamespace \
             WHERE n.nspname = 'public' AND a.indpred IS NULL AND a.indexprs IS NULL \
             ORDER BY 1, 2",
            &[],
        )
        .await
        .map_err(|e| query_error("looking for duplicate indexes", e))?;
    Ok(rows
        .iter()
        .map(|r| {
            let (dup, unique, table): (String, String, String) = (r.get(0), r.get(1), r.get(2));
            format!("index {dup} on {table} duplicates unique index {unique} (same columns); kept for equivalence with the original schema")
        })
        .collect())
}

fn verify(
    migrations: &[MigrationReport],
    tables: &[TableReport],
    indexes: &[IndexReport],
) -> Result<(), InitError> {
    let mut problems = Vec::new();
    let pending: Vec<String> = migrations
        .iter()
        .filter(|m| m.state == MigrationState::Pending)
        .map(|m| m.version.to_string())
        .collect();
    if !pending.is_empty() {
        problems.push(format!("pending migrations {}", pending.join(", ")));
    }
    let missing_tables: Vec<&str> = tables
        .iter()
        .filter(|t| t.rows.is_none())
        .map(|t| t.name.as_str())
        .collect();
    if !missing_tables.is_empty() {
        problems.push(format!("missing tables {}", missing_tables.join(", ")));
    }
    let missing_indexes: Vec<&str> = indexes
        .iter()
        .filter(|i| !i.present)
        .map(|i| i.name.as_str())
        .collect();
    if !missing_indexes.is_empty() {
        problems.push(format!("missing indexes {}", missing_indexes.join(", ")));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(InitError::Verify(format!(
            "schema is not up to date: {}",
            problems.join("; ")
        )))
    }
}

/// Splits SQL into single statements without comments, exactly where psql would (`sql::split`);
/// an unterminated string, comment or body is an error naming its line.
pub fn split_statements(sql: &str) -> Result<Vec<String>, crate::sql::SplitError> {
    Ok(crate::sql::split(sql)?
        .into_iter()
        .map(|s| s.text)
        .collect())
}

/// `MigrationFailed` for a file psql could not split either, before any of it runs. SQLSTATE 42601
/// (syntax_error) is what the server answers for an unterminated string, comment or body.
pub fn unsplittable(m: &Migration, err: &crate::sql::SplitError) -> InitError {
    InitError::MigrationFailed {
        version: m.version,
        name: m.name.clone(),
        sqlstate: "42601".to_string(),
        message: format!(
            "{:04}_{}.sql: {err}; nothing of it was run",
            m.version, m.name
        ),
    }
}

/// Tables and indexes a migration creates, read from its `CREATE` statements.
pub fn declared_objects(sql: &str) -> Vec<Object> {
    let mut objects = Vec::new();
    // A file that cannot be split declares nothing: applying it fails first, naming the line.
    for statement in split_statements(sql).unwrap_or_default() {
        let words: Vec<String> = statement
            .split(|c: char| c.is_whitespace() || c == '(')
            .filter(|w| !w.is_empty())
            .map(|w| w.to_lowercase())
            .collect();
        let w: Vec<&str> = words.iter().map(String::as_str).collect();
        if w.first() != Some(&"create") {
            continue;
        }
        let mut i = 1;
        while matches!(w.get(i), Some(&"unique") | Some(&"or") | Some(&"replace")) {
            i += 1;
        }
        let kind = match w.get(i) {
            Some(&"table") => ObjectKind::Table,
            Some(&"index") => ObjectKind::Index,
            _ => continue,
        };
        i += 1;
        if w.get(i) == Some(&"concurrently") {
            i += 1;
        }
        if w.get(i..i + 3) == Some(&["if", "not", "exists"][..]) {
            i += 3;
        }
        let Some(name) = w.get(i) else { continue };
        let unqualified = |n: &str| {
            n.trim_start_matches("public.")
                .trim_matches('"')
                .to_string()
        };
        let table = if kind == ObjectKind::Index {
            w.iter()
                .position(|x| *x == "on")
                .and_then(|p| w.get(p + 1))
                .map(|t| unqualified(t.trim_start_matches("only ")))
        } else {
            None
        };
        objects.push(Object {
            kind,
            name: unqualified(name),
            table,
        });
    }
    objects
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_initial_schema_declares_the_original_objects() {
        let all = embedded();
        assert_eq!(all[0].version, 1);
        assert_eq!(all[0].name, "initial_schema");
        assert!(all[0].transactional);
        let names: Vec<(&str, &str, Option<&str>)> = all[0]
            .objects
            .iter()
            .map(|o| (o.kind.as_str(), o.name.as_str(), o.table.as_deref()))
            .collect();
        assert_eq!(
            names,
            vec![
                ("table", "documents", None),
                ("table", "processing_logs", None),
                ("index", "idx_documents_s3_key", Some("documents")),
                ("index", "idx_documents_status", Some("documents")),
                ("index", "idx_documents_type", Some("documents")),
                ("index", "idx_documents_date", Some("documents")),
                ("index", "idx_logs_document_id", Some("processing_logs")),
                ("index", "idx_logs_agent", Some("processing_logs")),
            ]
        );
    }

    #[test]
    fn splitting_respects_quotes_comments_and_dollar_bodies() {
        let sql = "-- init-fn: no-transaction\n\
                   CREATE INDEX CONCURRENTLY i ON t(a); -- trailing; comment\n\
                   /* block; comment */ INSERT INTO t VALUES ('a;b', \"c;d\");\n\
                   DO $body$ BEGIN PERFORM 1; END $body$;";
        let parts = split_statements(sql).unwrap();
        assert_eq!(parts.len(), 3, "{parts:?}");
        assert_eq!(parts[0], "CREATE INDEX CONCURRENTLY i ON t(a)");
        assert!(
            parts[1].ends_with("VALUES ('a;b', \"c;d\")"),
            "{}",
            parts[1]
        );
        assert_eq!(parts[2], "DO $body$ BEGIN PERFORM 1; END $body$");
        assert!(!Migration::new(2, "x", sql).transactional);
    }

    #[test]
    fn checksum_is_sha256_of_the_file() {
        let m = Migration::new(1, "x", "SELECT 1;\n");
        assert_eq!(
            m.checksum,
            "sha256:b4e0497804e46e0a0b0b8c31975b062152d551bac49c3c2e80932567b4085dcd"
        );
    }
}
