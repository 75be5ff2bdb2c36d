//! The migration engine: versioned SQL files, a checksummed ledger, one session advisory lock, and one
//! transaction per migration together with its ledger row. What each migration did to the schema is
//! read from the catalog before and after it, and from the server's notices.

use std::time::{Duration, Instant};

use tokio_postgres::{Client, error::SqlState};

use crate::{
    config::DriftPolicy,
    engine::ledger,
    engine::report::{
        Action, IndexReport, MigrationReport, MigrationState, ObjectReport, Outcome, Report,
        TableReport,
    },
    error::{InitError, query_error},
    schema::catalog::{Catalog, CatalogError},
    schema::drift::{self, Drift},
    schema::objects::{self, ObjectId},
    session::Notices,
};

pub use crate::{
    engine::ledger::LEDGER,
    engine::migration::{
        Migration, NO_TRANSACTION_MARKER, Options, embedded, split_statements, unsplittable,
    },
};

/// The advisory lock key every init-fn run takes: the bytes of "init-fn" as a bigint.
pub const LOCK_KEY: i64 = 0x0069_6e69_742d_666e;

/// Runs `action` on the connected database; `notices` are the session's (see [`crate::session::connect`]).
pub async fn run(
    client: &mut Client,
    notices: &Notices,
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
    session_settings(client, options.statement_timeout).await?;
    let result = run_locked(client, notices, &sorted, action, options).await;
    if action == Action::Apply {
        // Closing the session would release it too; unlock explicitly so a pooled session stays clean.
        // Bounded: after a cancel the answer must still reach Lambda before its deadline.
        let _ = tokio::time::timeout(
            options.deadline.cleanup_left(),
            client.execute("SELECT pg_advisory_unlock($1)", &[&LOCK_KEY]),
        )
        .await;
    }
    let (migrations, objects, mut notes, last_reading, drift_before) = result?;

    let catalog = match last_reading {
        Some(catalog) => catalog,
        None => read_catalog(client).await?,
    };
    let pending = migrations
        .iter()
        .any(|m| m.state == MigrationState::Pending);
    // The file describes the schema after every migration: with some pending it cannot be compared.
    let drift = match &options.expected {
        Some(expected) if !pending => Some(drift::compare(expected, &catalog.schema())),
        _ => None,
    };
    let (tables, indexes) = inventory(client, &catalog, options.exact_counts).await?;
    let plan = if action == Action::Plan {
        crate::engine::pending::plan(client, &sorted, &migrations).await?
    } else {
        Vec::new()
    };
    if action == Action::Verify {
        verify(&migrations, &indexes, drift.as_deref())?;
    } else {
        notes.clear();
    }
    notes.extend(drift_notes(
        action,
        options,
        pending,
        drift_before,
        drift.as_deref(),
    ));
    if let Some(found) = drift.as_deref().filter(|d| !d.is_empty()) {
        if action == Action::Apply && options.drift == DriftPolicy::Fail {
            return Err(InitError::Verify(format!(
                "DB_DRIFT=fail: after applying, {}",
                drift::summary(found)
            )));
        }
        tracing::warn!(
            differences = found.len(),
            "drift: {}",
            drift::summary(found)
        );
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
        drift,
        notes,
        server_version,
        duration_ms: started.elapsed().as_millis() as u64,
    })
}

/// Migrations, objects, notes, the catalog as the last migration left it, and the number of
/// differences from the expected schema found before applying (apply at the latest version only).
type Outcomes = (
    Vec<MigrationReport>,
    Vec<ObjectReport>,
    Vec<String>,
    Option<Catalog>,
    Option<usize>,
);

/// A catalog reading, its failure named like every other query's.
async fn read_catalog(client: &Client) -> Result<Catalog, InitError> {
    Catalog::read(client, ledger::LEDGER_TABLE)
        .await
        .map_err(|CatalogError { query, source }| {
            query_error(&format!("reading the catalog ({query})"), source)
        })
}

async fn run_locked(
    client: &mut Client,
    notices: &Notices,
    migrations: &[Migration],
    action: Action,
    options: &Options,
) -> Result<Outcomes, InitError> {
    let ledger_exists = if action == Action::Apply {
        ledger::ensure(client).await?;
        true
    } else {
        ledger::exists(client).await?
    };
    let applied = if ledger_exists {
        ledger::read(client).await?
    } else {
        Default::default()
    };
    ledger::check_checksums(migrations, &applied)?;
    let fresh_ledger = applied.is_empty();

    let mut reports = Vec::new();
    let mut objects = Vec::new();
    let mut before: Option<Catalog> = None;
    let mut drift_before = None;
    let up_to_date = migrations.iter().all(|m| applied.contains_key(&m.version));
    if let (Action::Apply, true, Some(expected)) = (action, up_to_date, &options.expected) {
        let live = read_catalog(client).await?;
        let found = drift::compare(expected, &live.schema());
        if !found.is_empty() {
            tracing::warn!(
                differences = found.len(),
                "drift: {} before applying ({})",
                plural(found.len()),
                drift::summary(&found)
            );
            if options.drift == DriftPolicy::Fail {
                return Err(InitError::Verify(format!(
                    "DB_DRIFT=fail: {}; nothing was changed",
                    drift::summary(&found)
                )));
            }
        }
        drift_before = Some(found.len());
        before = Some(live);
    }
    for m in migrations {
        let report = |state, duration_ms| MigrationReport {
            version: m.version,
            name: m.name.clone(),
            checksum: m.checksum.clone(),
            state,
            duration_ms,
        };
        if let Some(row) = applied.get(&m.version) {
            let ms = row.duration_ms.map(|d| d.max(0) as u64);
            reports.push(report(MigrationState::AlreadyApplied, ms));
            continue;
        }
        if action != Action::Apply {
            reports.push(report(MigrationState::Pending, None));
            continue;
        }
        let was = match before.take() {
            Some(c) => c,
            None => read_catalog(client).await?,
        };
        // Only this migration's notices count: drop those of the bookkeeping before it.
        notices.take();
        let elapsed = crate::engine::apply::migration(client, m, options).await?;
        // The next migration starts as `psql -f` would start it: nothing this one SET leaks into it.
        crate::engine::fresh_session::restore(client, options.statement_timeout).await?;
        let is = read_catalog(client).await?;
        let did = effects(m.version, &was, &is, &notices.take());
        // Adopted: the original (or a hand) had already built what this migration creates.
        let adopted = fresh_ledger
            && did.iter().all(|o| o.outcome == Outcome::AlreadyPresent)
            && !did.is_empty();
        tracing::info!(
            version = m.version,
            name = %m.name,
            ms = elapsed,
            adopted,
            created = did.iter().filter(|o| o.outcome == Outcome::Created).count(),
            "migration applied"
        );
        let state = match adopted {
            true => MigrationState::Adopted,
            false => MigrationState::Applied,
        };
        reports.push(report(state, Some(elapsed)));
        objects.extend(did);
        before = Some(is);
    }

    let mut notes = ledger::unknown_versions(migrations, &applied);
    notes.extend(duplicate_indexes(client).await?);
    Ok((reports, objects, notes, before, drift_before))
}

/// What migration `version` did: the objects the server said it found in place (in notice order),
/// then those that appeared and those that disappeared between the two readings.
fn effects(
    version: u32,
    before: &Catalog,
    after: &Catalog,
    notices: &[crate::session::Notice],
) -> Vec<ObjectReport> {
    let (created, dropped) = objects::changes(before, after);
    let mut found: Vec<ObjectId> = Vec::new();
    for object in notices.iter().filter_map(|n| after.named_by(n)) {
        if !found.contains(&object) && !created.contains(&object) {
            found.push(object);
        }
    }
    let entry = |o: ObjectId, outcome| ObjectReport {
        kind: o.kind.as_str(),
        name: o.name,
        table: o.table,
        migration: version,
        outcome,
    };
    let mut out: Vec<ObjectReport> = found
        .into_iter()
        .map(|o| entry(o, Outcome::AlreadyPresent))
        .collect();
    out.extend(created.into_iter().map(|o| entry(o, Outcome::Created)));
    out.extend(dropped.into_iter().map(|o| entry(o, Outcome::Dropped)));
    out
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

/// The engine's bounds on the session (see [`crate::engine::fresh_session::bounds`]).
async fn session_settings(client: &Client, limit: Duration) -> Result<(), InitError> {
    crate::engine::fresh_session::bounds(client, limit)
        .await
        .map_err(|e| query_error("setting statement_timeout", e))
}

/// Row counts of the tables (see [`crate::schema::rows`]) and the indexes, as the catalog lists them.
async fn inventory(
    client: &Client,
    catalog: &Catalog,
    exact_counts: bool,
) -> Result<(Vec<TableReport>, Vec<IndexReport>), InitError> {
    let mut tables = Vec::new();
    for t in catalog.tables() {
        let rows = crate::schema::rows::count(client, &t.name, exact_counts)
            .await
            .map_err(|e| query_error("counting rows", e))?;
        tables.push(TableReport {
            name: t.name.clone(),
            rows: Some(rows.rows),
            rows_exact: Some(rows.exact),
        });
    }
    let indexes = catalog
        .indexes
        .iter()
        .map(|i| IndexReport {
            name: i.name.clone(),
            table: i.table.clone(),
            present: i.valid,
        })
        .collect();
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

/// Pending migrations fail `verify`, and so does drift; without a comparison (migrations pending, or
/// no `sql/schema.txt` built in) an INVALID index still does.
fn verify(
    migrations: &[MigrationReport],
    indexes: &[IndexReport],
    drift: Option<&[Drift]>,
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
    match drift {
        Some([]) => {}
        Some(found) => problems.push(drift::summary(found)),
        None => {
            for i in indexes.iter().filter(|i| !i.present) {
                problems.push(format!(
                    "index {} on {} is INVALID (a failed or cancelled CREATE INDEX CONCURRENTLY): DROP INDEX CONCURRENTLY it and re-run, or REINDEX INDEX CONCURRENTLY",
                    i.name, i.table
                ));
            }
        }
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

/// What the report says about drift beside `drift[]`: the count found before applying, the count
/// now (plan and status), or why nothing was compared.
fn drift_notes(
    action: Action,
    options: &Options,
    pending: bool,
    before: Option<usize>,
    drift: Option<&[Drift]>,
) -> Vec<String> {
    let mut notes = Vec::new();
    if let Some(n) = before.filter(|n| *n > 0) {
        notes.push(format!("drift: {} before applying", plural(n)));
    }
    match drift {
        Some(found) if !found.is_empty() && action != Action::Verify => {
            notes.push(format!("drift: {}", drift::summary(found)));
        }
        None if options.expected.is_none() => notes.push(
            "drift: not compared: no expected schema for these migrations (sql/schema.txt describes the embedded ones)"
                .to_string(),
        ),
        None if pending => notes.push(format!(
            "drift: not compared while migrations are pending ({} describes the schema after all of them)",
            drift::SCHEMA_FILE
        )),
        _ => {}
    }
    notes
}

/// `1 difference`, `3 differences`.
fn plural(n: usize) -> String {
    format!("{n} difference{}", if n == 1 { "" } else { "s" })
}
