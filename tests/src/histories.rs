//! The reference for a migration history: `psql -f` of each file in a session of its own (what a user
//! running the files by hand gets), and what to compare the engine's result with beyond `pg_dump` of
//! `public`: every relation in every schema with its owner.

use std::{path::Path, process::Command};

use init_fn::engine::run::Migration;
use xtask::local::postgres::PgServer;

/// `psql -X -q -v ON_ERROR_STOP=1 [-1] -f file` against `db` (the local PostgreSQL binaries' psql):
/// one new session for the file; `-1` (one transaction) when `single`.
pub fn psql_file(pg: &PgServer, db: &str, file: &Path, single: bool) -> anyhow::Result<()> {
    let psql = xtask::local::postgres::local_bin_dir()?.join("psql");
    let out = Command::new(&psql)
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1"])
        .args(single.then_some("-1"))
        .arg("-p")
        .arg(pg.port().to_string())
        .arg("-U")
        .arg(pg.user())
        .arg("-d")
        .arg(db)
        .arg("-f")
        .arg(file)
        .env("PGPASSWORD", pg.password())
        .env("PGSSLMODE", "prefer")
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "psql -f {} failed ({}): {}",
        file.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(())
}

/// Each migration through `psql -f` into `db`, file by file, each in its own session; in one
/// transaction unless the file is `no-transaction` (as the engine runs it).
pub fn apply_with_psql(pg: &PgServer, db: &str, migrations: &[Migration]) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    for m in migrations {
        let file = dir.path().join(format!("{:04}_{}.sql", m.version, m.name));
        std::fs::write(&file, &m.sql)?;
        psql_file(pg, db, &file, m.transactional)?;
    }
    Ok(())
}

/// Every relation outside the system schemas as `kind schema.name owner=role`, sorted, the ledger
/// left out: where each object landed and as whom it was created.
pub async fn relations(client: &tokio_postgres::Client) -> anyhow::Result<Vec<String>> {
    Ok(client
        .query(
            "SELECT format('%s %s.%s owner=%s', c.relkind, n.nspname, c.relname, pg_get_userbyid(c.relowner)) \
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast') \
               AND n.nspname NOT LIKE 'pg_temp%' AND n.nspname NOT LIKE 'pg_toast_temp%' \
               AND c.relname NOT LIKE '\\_init\\_fn\\_%' ORDER BY 1",
            &[],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect())
}

/// The migrations of `tests/fixtures/histories/<project>/`: its `NNNN_name.sql` files in order.
pub fn load(project: &str) -> anyhow::Result<Vec<Migration>> {
    let dir = crate::harness::root()
        .join("tests/fixtures/histories")
        .join(project);
    let mut found = Vec::new();
    for entry in std::fs::read_dir(&dir)? {
        let path = entry?.path();
        let file = path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let Some((version, name)) = file.strip_suffix(".sql").and_then(|s| s.split_once('_'))
        else {
            continue;
        };
        let sql = std::fs::read_to_string(&path)?;
        found.push(Migration::new(version.parse()?, name, &sql));
    }
    found.sort_by_key(|m| m.version);
    anyhow::ensure!(!found.is_empty(), "no migrations in {}", dir.display());
    Ok(found)
}

/// `schema.table rows` for every table outside the system schemas (the ledger left out).
pub async fn row_counts(client: &tokio_postgres::Client) -> anyhow::Result<Vec<String>> {
    let tables: Vec<String> = client
        .query(
            "SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
               AND n.nspname NOT LIKE 'pg_%' AND c.relname NOT LIKE '\\_init\\_fn\\_%' ORDER BY 1",
            &[],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut out = Vec::new();
    for t in tables {
        let n: i64 = client
            .query_one(&format!("SELECT count(*) FROM {t}"), &[])
            .await?
            .get(0);
        out.push(format!("{t} {n}"));
    }
    Ok(out)
}
