//! The ledger `public._init_fn_migrations`: one row per applied migration with its checksum. Created
//! under the migration lock, read before anything runs, written in each migration's own transaction.

use std::collections::BTreeMap;

use tokio_postgres::{Client, GenericClient};

use crate::{
    engine::migration::{Migration, Options},
    error::{InitError, query_error},
};

/// The ledger, in `public` beside the schema it describes.
pub const LEDGER: &str = "public._init_fn_migrations";
/// Its table name, which the catalog reader leaves out of the schema.
pub const LEDGER_TABLE: &str = "_init_fn_migrations";

/// A ledger row.
#[derive(Debug, Clone)]
pub struct Applied {
    pub name: String,
    pub checksum: String,
    pub duration_ms: Option<i64>,
}

pub async fn ensure(client: &Client) -> Result<(), InitError> {
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

pub async fn exists(client: &Client) -> Result<bool, InitError> {
    let row = client
        .query_one(&format!("SELECT to_regclass('{LEDGER}') IS NOT NULL"), &[])
        .await
        .map_err(|e| query_error("looking for the ledger", e))?;
    Ok(row.get(0))
}

pub async fn read(client: &Client) -> Result<BTreeMap<u32, Applied>, InitError> {
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

/// An applied migration whose file changed is refused before anything runs.
pub fn check_checksums(
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

/// Ledger versions this build does not know, as report notes.
pub fn unknown_versions(migrations: &[Migration], applied: &BTreeMap<u32, Applied>) -> Vec<String> {
    applied
        .iter()
        .filter(|(v, _)| !migrations.iter().any(|m| m.version == **v))
        .map(|(v, row)| {
            format!(
                "ledger has migration {v} ({}) that this build does not know: a newer init-fn applied it",
                row.name
            )
        })
        .collect()
}

/// Writes the ledger row of `m`.
pub async fn record(
    client: &impl GenericClient,
    m: &Migration,
    ms: u64,
    options: &Options,
) -> Result<u64, tokio_postgres::Error> {
    client
        .execute(
            &format!(
                "INSERT INTO {LEDGER} (version, name, checksum, duration_ms, applied_by) VALUES ($1, $2, $3, $4, $5)"
            ),
            &[
                &(m.version as i32),
                &m.name,
                &m.checksum,
                &(ms as i64),
                &options.applied_by,
            ],
        )
        .await
}
