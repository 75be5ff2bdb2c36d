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
    pub plan: Vec<crate::pending::PlannedMigration>,
    pub objects: Vec<ObjectReport>,
    pub tables: Vec<TableReport>,
    pub indexes: Vec<IndexReport>,
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Did not exist before this invocation, exists now.
    Created,
    AlreadyPresent,
    /// Does not exist (read-only actions; apply would create it).
    Missing,
}

#[derive(Debug, Serialize)]
pub struct ObjectReport {
    pub kind: &'static str,
    pub name: String,
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
    pub present: bool,
}
