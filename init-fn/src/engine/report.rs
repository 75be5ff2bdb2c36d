//! The JSON report a run returns. Field order is the contract's and is snapshot-tested.

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Apply,
    Plan,
    Status,
    Verify,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub status: &'static str,
    pub action: Action,
    pub database: String,
    pub migrations: Vec<MigrationReport>,
    /// `plan` only: what each pending migration would run and the locks it would take.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub plan: Vec<PlannedMigration>,
    pub objects: Vec<ObjectReport>,
    pub tables: Vec<TableReport>,
    pub indexes: Vec<IndexReport>,
    /// The live schema compared with `sql/schema.txt`, object by object; null when not compared
    /// (migrations pending, or no file built in).
    pub drift: Option<Vec<crate::schema::drift::Drift>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    pub server_version: String,
    pub duration_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MigrationState {
    /// Run by this invocation.
    Applied,
    /// In the ledger before this invocation.
    AlreadyApplied,
    /// Not applied yet (plan/status/verify).
    Pending,
    /// Run by this invocation on a database where everything it creates already existed (the original's).
    Adopted,
}

#[derive(Debug, Serialize)]
pub struct MigrationReport {
    pub version: u32,
    pub name: String,
    pub checksum: String,
    pub state: MigrationState,
    /// Time this migration took when it was applied; null while pending.
    pub duration_ms: Option<u64>,
}

/// What a migration run by this invocation did to an object, as the catalog and the server say.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// In the catalog after the migration, not before it.
    Created,
    /// The migration would have created it but the server found it in place
    /// (its `… already exists, skipping` notice).
    AlreadyPresent,
    /// In the catalog before the migration, not after it.
    Dropped,
}

#[derive(Debug, Serialize)]
pub struct ObjectReport {
    /// `table`, `column`, `index`, `constraint`, `sequence`, `view`, `function`, `trigger`, `enum`, …
    pub kind: &'static str,
    /// As PostgreSQL named it (unnamed indexes and constraints included); a function with its arguments.
    pub name: String,
    /// The table a column, index, constraint or trigger belongs to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub table: Option<String>,
    /// The migration that did it.
    pub migration: u32,
    pub outcome: Outcome,
}

#[derive(Debug, Serialize)]
pub struct TableReport {
    pub name: String,
    /// Null when the table does not exist.
    pub rows: Option<i64>,
    /// `true`: `count(*)`; `false`: the catalog's estimate (the table is too big to count per run).
    pub rows_exact: Option<bool>,
}

#[derive(Debug, Serialize)]
pub struct IndexReport {
    pub name: String,
    pub table: String,
    /// In the catalog and valid; `false`: INVALID (a failed `CREATE INDEX CONCURRENTLY`), unused by queries.
    pub present: bool,
}

/// `plan`: one pending migration.
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
    /// A statement kind plan cannot classify: its locks are not known (rather than guessed).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub lock_unknown: bool,
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
