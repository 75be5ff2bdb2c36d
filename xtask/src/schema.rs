//! `cargo xtask schema [--check]`: replays `sql/` into a scratch PostgreSQL (the providers of
//! test-local), reads its catalog with the function's own reader and writes the canonical description
//! to `sql/schema.txt`, the file the function embeds and `verify` compares with. `--check` (run by
//! `cargo xtask test`) fails when the committed file differs, with the diff and the command.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

use crate::{
    lint::sql,
    local::postgres::{PgChoice, PgServer},
};

// The function's catalog reader and canonical rendering, without linking the function (its AWS SDK).
#[allow(dead_code)]
#[path = "../../init-fn/src/schema/catalog.rs"]
mod catalog;
#[path = "../../init-fn/src/schema/description.rs"]
mod description;
// `description` reaches it as `super::model`, as in the function.
#[allow(dead_code, clippy::module_inception)]
#[path = "../../init-fn/src/schema/model.rs"]
mod model;

/// The expected schema's file, relative to the project root.
pub const SCHEMA_FILE: &str = "sql/schema.txt";
/// The first line that makes a migration run outside a transaction (as in `init_fn::engine::run`).
const NO_TRANSACTION: &str = "-- init-fn: no-transaction";
/// The ledger's table name, left out of the reading like the function leaves it out.
const LEDGER_TABLE: &str = "_init_fn_migrations";
const HEADER: &str =
    "The schema sql/ produces, as PostgreSQL's catalog renders it (one object a line, sorted).
Written by `cargo xtask schema`, checked by `cargo xtask test`, embedded into the function, which
compares the live schema with it (verify, and apply before it runs). Do not edit: regenerate it.";

/// Write sql/schema.txt from a scratch database migrated with sql/ (or check that it is current)
#[derive(clap::Args)]
pub struct Schema {
    /// Compare with the committed file instead of writing it; fails with the diff
    #[arg(long)]
    check: bool,
    /// Postgres: auto | docker | local | postgres://URL (a URL server gets a new scratch database)
    #[arg(long, default_value = "auto")]
    postgres: String,
}

impl Schema {
    pub fn run(self, _sh: &xshell::Shell) -> anyhow::Result<()> {
        let choice: PgChoice = self.postgres.parse()?;
        crate::local::postgres::hand_over_if_docker(&choice)?;
        let root = crate::project_root();
        let generated = crate::runtime()?.block_on(async {
            let pg = PgServer::start(&choice).await?;
            let text = generate(&pg, &root.join("sql")).await;
            pg.stop().await?;
            text
        })?;
        let path = root.join(SCHEMA_FILE);
        if self.check {
            let committed = std::fs::read_to_string(&path).ok();
            check(committed.as_deref(), &generated)?;
            println!("{SCHEMA_FILE} is current");
        } else {
            std::fs::write(&path, &generated).with_context(|| format!("write {SCHEMA_FILE}"))?;
            println!(
                "wrote {SCHEMA_FILE} ({} objects)",
                generated
                    .lines()
                    .filter(|l| !l.starts_with(['#', ' ']))
                    .count()
            );
        }
        Ok(())
    }
}

/// The text of `sql/schema.txt` for the migrations in `sql_dir`, replayed into a new database of `pg`.
pub async fn generate(pg: &PgServer, sql_dir: &Path) -> anyhow::Result<String> {
    let db = format!("init_fn_schema_{}", uuid::Uuid::new_v4().simple());
    pg.create_database(&db).await?;
    for (file, text) in migrations(sql_dir)? {
        // Each file in a session of its own, as `psql -f` runs it: no SET of one leaks into the next.
        let client = pg.client(&db).await?;
        client
            .batch_execute("SET standard_conforming_strings = on")
            .await?;
        let failed = |e| anyhow::anyhow!("schema: {file}: {e}");
        if text.lines().next().map(str::trim) == Some(NO_TRANSACTION) {
            let statements = sql::split(&text).map_err(|e| failed(e.to_string()))?;
            for s in statements {
                client
                    .batch_execute(&s.text)
                    .await
                    .map_err(|e| failed(format!("line {}: {e}", s.line)))?;
            }
        } else {
            // One simple-protocol message: the server runs it as one transaction, like psql -1.
            client
                .batch_execute(&text)
                .await
                .map_err(|e| failed(e.to_string()))?;
        }
    }
    let client = pg.client(&db).await?;
    let reading = catalog::Catalog::read(&client, LEDGER_TABLE)
        .await
        .map_err(|e| anyhow::anyhow!("schema: reading the catalog ({}): {}", e.query, e.source))?;
    Ok(reading.schema().render(HEADER))
}

/// `committed` (the file as it is, `None` when missing) against `generated`: the diff and the command
/// that refreshes it when they differ.
pub fn check(committed: Option<&str>, generated: &str) -> anyhow::Result<()> {
    let Some(committed) = committed else {
        bail!("{SCHEMA_FILE} is missing: write it with `cargo xtask schema` and commit it");
    };
    if committed == generated {
        return Ok(());
    }
    let diff = similar::TextDiff::from_lines(committed, generated)
        .unified_diff()
        .context_radius(2)
        .header(SCHEMA_FILE, "what sql/ produces")
        .to_string();
    bail!(
        "{SCHEMA_FILE} is stale (sql/ changed without it):\n{diff}\nrefresh it with `cargo xtask schema`, review the diff and commit it"
    )
}

/// `NNNN_name.sql` files of `dir` in version order, with their text.
fn migrations(dir: &Path) -> anyhow::Result<Vec<(String, String)>> {
    migration_files(dir)?
        .into_iter()
        .map(|path| {
            let file = path
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            let text = std::fs::read_to_string(&path).with_context(|| format!("read {file}"))?;
            Ok((file, text))
        })
        .collect()
}

/// The `NNNN_name.sql` files of `dir` (a version number, `_`, a name, `.sql`) in version order;
/// other files are skipped.
pub fn migration_files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut found: Vec<(u32, PathBuf)> = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("read {}", dir.display()))? {
        let path = entry?.path();
        let file = path.file_name().unwrap_or_default().to_string_lossy();
        let version = file
            .strip_suffix(".sql")
            .and_then(|stem| stem.split_once('_'))
            .and_then(|(n, _)| n.parse::<u32>().ok());
        if let Some(v) = version {
            found.push((v, path));
        }
    }
    found.sort();
    Ok(found.into_iter().map(|(_, p)| p).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stale_or_missing_file_fails_with_the_diff_and_the_command() {
        assert!(check(Some("a\n"), "a\n").is_ok());
        let err = check(Some("# h\ntable a\n"), "# h\ntable a\ntable b\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("+table b"), "{err}");
        assert!(err.contains("`cargo xtask schema`"), "{err}");
        let err = check(None, "table a\n").unwrap_err().to_string();
        assert!(
            err.contains("missing") && err.contains("`cargo xtask schema`"),
            "{err}"
        );
    }
}
