//! `cargo xtask migrate new <name>`: scaffolds the next `sql/NNNN_<name>.sql` with the rules in its header.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

/// Work on the migrations in `sql/`
#[derive(clap::Args)]
pub struct Migrate {
    #[command(subcommand)]
    command: MigrateCommand,
}

#[derive(clap::Subcommand)]
enum MigrateCommand {
    /// Create `sql/NNNN_<name>.sql` with the next version and a header explaining the rules
    New {
        /// Lowercase letters, digits and `_`, e.g. `documents_status_index`
        name: String,
        /// The migrations directory
        #[arg(long, default_value = "sql")]
        dir: PathBuf,
    },
}

impl Migrate {
    pub fn run(self, _sh: &xshell::Shell) -> anyhow::Result<()> {
        match self.command {
            MigrateCommand::New { name, dir } => {
                let dir = crate::project_root().join(dir);
                let path = new_migration(&dir, &name)?;
                let shown = path.strip_prefix(crate::project_root()).unwrap_or(&path);
                println!("created {}", shown.display());
                println!(
                    "next: write the SQL, `cargo xtask lint`, then `cargo xtask test-local` (accept the changed reports with --update-snapshots after reading the diff)"
                );
                Ok(())
            }
        }
    }
}

/// Writes the next migration file in `dir` and returns its path.
pub fn new_migration(dir: &Path, name: &str) -> anyhow::Result<PathBuf> {
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    {
        bail!(
            "migrate new: `{name}` is not a valid name: use lowercase letters, digits and `_` ([a-z0-9_]+), e.g. documents_status_index"
        );
    }
    let versions = versions(dir)?;
    let next = versions.last().map_or(1, |(v, _)| v + 1);
    if let Some((_, file)) = versions
        .iter()
        .find(|(_, f)| f.ends_with(&format!("_{name}.sql")))
    {
        bail!("migrate new: {file} already has the name `{name}`: pick another");
    }
    let path = dir.join(format!("{next:04}_{name}.sql"));
    std::fs::write(&path, header(next, name))
        .with_context(|| format!("migrate new: write {}", path.display()))?;
    Ok(path)
}

/// Versions and file names in `dir`, sorted; refuses a duplicate or a gap already present.
fn versions(dir: &Path) -> anyhow::Result<Vec<(u32, String)>> {
    let mut found = Vec::new();
    for entry in
        std::fs::read_dir(dir).with_context(|| format!("migrate new: read {}", dir.display()))?
    {
        let file = entry?.file_name().to_string_lossy().into_owned();
        let Some(stem) = file.strip_suffix(".sql") else {
            continue;
        };
        let version = stem
            .split_once('_')
            .and_then(|(n, _)| n.parse::<u32>().ok())
            .with_context(|| format!("migrate new: {file} is not named NNNN_description.sql"))?;
        found.push((version, file));
    }
    found.sort();
    for pair in found.windows(2) {
        if pair[0].0 == pair[1].0 {
            bail!(
                "migrate new: version {} appears twice ({} and {}): the build would refuse it; renumber the newer one first",
                pair[0].0,
                pair[0].1,
                pair[1].1
            );
        }
    }
    for (expected, (version, file)) in (1..).zip(&found) {
        if *version != expected {
            bail!(
                "migrate new: version {expected} is missing before {file}: versions run 1, 2, 3, … without gaps; renumber it first"
            );
        }
    }
    Ok(found)
}

fn header(version: u32, name: &str) -> String {
    format!(
        "\
-- {version:04} {name}: <what this migration does, in one line>
--
-- Rules (written by `cargo xtask migrate new`):
-- * Never edit this file once it has been applied anywhere: its checksum is in the ledger and the next
--   run stops with ChecksumMismatch. Fix forward with a new migration.
-- * The file runs in one transaction together with its ledger row. CREATE INDEX CONCURRENTLY (and
--   anything else that cannot run in a transaction) needs `-- init-fn: no-transaction` as the file's
--   FIRST line; then each statement runs on its own and a failed run starts again from the first one,
--   so make every statement idempotent (IF NOT EXISTS / IF EXISTS).
-- * The tables are live: `cargo xtask lint` flags statements that lock or rewrite them (squawk's rules).
--   Accept a finding only with a reason, on the line before the statement:
--   -- init-fn: allow <rule> -- <why it is safe here>
-- * `{{\"action\": \"plan\"}}` shows each statement and the lock it takes on which table, with its size.

"
    )
}
