//! What the engine works on, shared by every layer above it: a migration (a versioned SQL file with its
//! checksum) and the settings of one run.

use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::{
    config::DriftPolicy, deadline::Deadline, error::InitError, schema::model::Schema,
    session::Canceller,
};

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
    /// The schema the migrations produce (`sql/schema.txt`); `None`: drift is not compared.
    pub expected: Option<Schema>,
    /// `DB_DRIFT`: whether `apply` stops on drift it finds before running.
    pub drift: DriftPolicy,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_initial_schema_comes_first_and_is_transactional() {
        let all = embedded();
        assert_eq!(all[0].version, 1);
        assert_eq!(all[0].name, "initial_schema");
        assert!(all[0].transactional);
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
