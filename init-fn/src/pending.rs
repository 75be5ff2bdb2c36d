//! The `plan` action's view of pending migrations: each statement on one line, whether it runs in a
//! transaction, and the lock it takes on which existing table, with the table's size and row estimate
//! from the catalog (so the cost is the same at any table size).

use serde::Serialize;
use tokio_postgres::Client;

use crate::{
    error::{InitError, one_line},
    migrate::Migration,
    plan::{self, On},
    report::{MigrationReport, MigrationState},
};

#[derive(Debug, Serialize)]
pub struct PlannedMigration {
    pub version: u32,
    pub name: String,
    pub in_transaction: bool,
    pub statements: Vec<PlannedStatement>,
}

#[derive(Debug, Serialize)]
pub struct PlannedStatement {
    /// Line of the statement in the file.
    pub line: usize,
    pub sql: String,
    /// Locks on tables that exist now; tables created by pending migrations block nobody.
    pub locks: Vec<PlannedLock>,
}

#[derive(Debug, Serialize)]
pub struct PlannedLock {
    pub mode: &'static str,
    pub table: String,
    /// What others cannot do while the statement holds the lock.
    pub blocks: &'static str,
    /// `pg_total_relation_size`: table, indexes and TOAST.
    pub size_bytes: i64,
    /// `pg_class.reltuples`; null when the table was never analyzed.
    pub rows_estimate: Option<i64>,
}

/// The plan of every migration `reports` calls pending.
pub async fn plan(
    client: &Client,
    migrations: &[Migration],
    reports: &[MigrationReport],
) -> Result<Vec<PlannedMigration>, InitError> {
    let mut planned = Vec::new();
    for m in migrations {
        let pending = reports
            .iter()
            .any(|r| r.version == m.version && r.state == MigrationState::Pending);
        if !pending {
            continue;
        }
        let mut statements = Vec::new();
        let split =
            crate::sql::split(&m.sql).map_err(|err| crate::migrate::unsplittable(m, &err))?;
        for statement in split {
            let mut locks = Vec::new();
            for lock in plan::classify(&statement.text).locks {
                if let Some((table, size_bytes, rows_estimate)) =
                    table_facts(client, &lock.on).await?
                {
                    locks.push(PlannedLock {
                        mode: lock.mode.as_str(),
                        table,
                        blocks: lock.mode.blocks(),
                        size_bytes,
                        rows_estimate,
                    });
                }
            }
            statements.push(PlannedStatement {
                line: statement.line,
                sql: statement.one_line(),
                locks,
            });
        }
        planned.push(PlannedMigration {
            version: m.version,
            name: m.name.clone(),
            in_transaction: m.transactional,
            statements,
        });
    }
    Ok(planned)
}

/// Name, total size and row estimate of the existing table `on` designates in `public`.
async fn table_facts(
    client: &Client,
    on: &On,
) -> Result<Option<(String, i64, Option<i64>)>, InitError> {
    let (sql, name) = match on {
        On::Table(t) => (
            "SELECT c.relname::text, pg_total_relation_size(c.oid), c.reltuples::float8 \
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = 'public' AND c.relname = $1 AND c.relkind IN ('r', 'p')",
            t,
        ),
        On::TableOfIndex(i) => (
            "SELECT t.relname::text, pg_total_relation_size(t.oid), t.reltuples::float8 \
             FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid \
             JOIN pg_class t ON t.oid = x.indrelid JOIN pg_namespace n ON n.oid = i.relnamespace \
             WHERE n.nspname = 'public' AND i.relname = $1",
            i,
        ),
    };
    let row = client.query_opt(sql, &[name]).await.map_err(|e| {
        InitError::Connect(one_line(&format!("plan: reading the size of {name}: {e}")))
    })?;
    Ok(row.map(|r| {
        let estimate: f64 = r.get(2);
        (
            r.get(0),
            r.get(1),
            (estimate >= 0.0).then_some(estimate.round() as i64),
        )
    }))
}
