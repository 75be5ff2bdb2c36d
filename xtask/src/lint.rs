//! `cargo xtask lint`: squawk's rules on every migration, shown like compiler diagnostics, with in-file
//! acceptances that must give a reason. `cargo xtask test` runs it; `cargo xtask deploy` refuses to
//! ship a binary whose migrations have unaccepted findings.

mod acceptance;
mod report;
mod squawk;

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

use self::acceptance::acceptances;
pub use self::{
    acceptance::{ACCEPTANCE_RULE, ALLOW},
    report::{Accepted, Diagnostic, Level, Report},
    squawk::{SQUAWK_VERSION, ensure_squawk},
};

// The function's own statement splitter and lock classifier (std only), without linking the function.
#[allow(dead_code)]
#[path = "../../init-fn/src/plan/locks.rs"]
mod plan;
#[allow(dead_code)]
#[path = "../../init-fn/src/sql.rs"]
pub(crate) mod sql;

/// The first line that makes a migration run outside a transaction (as in `init_fn::engine::run`).
const NO_TRANSACTION: &str = "-- init-fn: no-transaction";
/// Rules about what a statement does to a table's existing rows or readers: moot when the file itself
/// created the table earlier (it is empty and nobody uses it yet).
const EXISTING_TABLE_RULES: &[&str] = &[
    "adding-field-with-default",
    "adding-foreign-key-constraint",
    "adding-not-nullable-field",
    "adding-required-field",
    "adding-serial-primary-key-field",
    "ban-drop-column",
    "ban-drop-not-null",
    "ban-drop-table",
    "changing-column-type",
    "constraint-missing-not-valid",
    "disallowed-unique-constraint",
    "renaming-column",
    "renaming-table",
    "require-concurrent-index-creation",
    "require-concurrent-index-deletion",
];
/// The rule name of a statement that cannot run in the transaction the engine wraps the file in.
pub const NO_TRANSACTION_RULE: &str = "init-fn-needs-no-transaction";
/// The rule name of a file that cannot be split into statements (an unterminated string, comment or body).
pub const UNTERMINATED_RULE: &str = "init-fn-unterminated";

/// Lint migration files with squawk; exits non-zero on an unaccepted finding
#[derive(clap::Args)]
pub struct Lint {
    /// Files or directories of `NNNN_name.sql` files [default: sql/]
    paths: Vec<PathBuf>,
    /// Also list the accepted findings with their reasons
    #[arg(long, short)]
    verbose: bool,
}

impl Lint {
    pub fn run(self, _sh: &xshell::Shell) -> anyhow::Result<()> {
        let paths = if self.paths.is_empty() {
            vec![crate::project_root().join("sql")]
        } else {
            self.paths
        };
        let report = lint(&paths)?;
        print!("{}", report.render(self.verbose));
        if report.errors() > 0 {
            bail!(
                "lint: {} unaccepted finding(s); fix the migration or accept each with `{ALLOW} <rule> -- <reason>`",
                report.errors()
            );
        }
        Ok(())
    }
}

/// Lints `paths` (files, or directories whose `*.sql` files are linted in name order).
pub fn lint(paths: &[PathBuf]) -> anyhow::Result<Report> {
    let squawk = ensure_squawk()?;
    let mut files = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut sql: Vec<PathBuf> = std::fs::read_dir(p)
                .with_context(|| format!("lint: read {}", p.display()))?
                .map(|e| e.map(|e| e.path()))
                .collect::<Result<_, _>>()?;
            sql.retain(|f| f.extension().is_some_and(|e| e == "sql"));
            sql.sort();
            files.extend(sql);
        } else {
            files.push(p.clone());
        }
    }
    let mut report = Report::default();
    for file in &files {
        lint_file(&squawk, file, &mut report)?;
    }
    report.files = files.len();
    Ok(report)
}

/// Lints `sql/` of the project: what `deploy` and `test` call.
pub fn lint_migrations() -> anyhow::Result<Report> {
    lint(&[crate::project_root().join("sql")])
}

/// For `deploy`: prints the findings and fails on unaccepted ones unless `allow_findings`.
pub fn gate_deploy(allow_findings: bool) -> anyhow::Result<()> {
    let report = lint_migrations()?;
    if report.errors() == 0 && report.warnings() == 0 {
        eprintln!(
            "lint: sql/ clean ({} file(s), {} accepted finding(s))",
            report.files,
            report.accepted.len()
        );
        return Ok(());
    }
    eprint!("{}", report.render(false));
    if report.errors() == 0 {
        return Ok(());
    }
    if !allow_findings {
        bail!(
            "deploy: {} unaccepted lint finding(s) in sql/: fix or accept them (`cargo xtask lint`), or pass --allow-lint-findings to ship anyway; nothing was changed",
            report.errors()
        );
    }
    eprintln!("\n{}", "!".repeat(100));
    eprintln!(
        "!! --allow-lint-findings: SHIPPING {} UNACCEPTED LINT FINDING(S); these migrations may lock or rewrite live tables",
        report.errors()
    );
    eprintln!("{}\n", "!".repeat(100));
    Ok(())
}

fn lint_file(squawk_bin: &Path, file: &Path, report: &mut Report) -> anyhow::Result<()> {
    let sql =
        std::fs::read_to_string(file).with_context(|| format!("lint: read {}", file.display()))?;
    let transactional = sql.lines().next().map(str::trim) != Some(NO_TRANSACTION);
    let statements = match sql::split(&sql) {
        Ok(statements) => statements,
        Err(err) => {
            // What follows the unclosed construct cannot be read as statements: nothing else to check.
            report.diagnostics.push(Diagnostic {
                level: Level::Error,
                file: file.to_path_buf(),
                line: err.line,
                column: 1,
                rule: UNTERMINATED_RULE.to_string(),
                message: err.to_string(),
                help: vec![
                    "help: psql and the engine would run the rest of the file as part of it: close it"
                        .to_string(),
                ],
            });
            return Ok(());
        }
    };
    let mut acceptances = acceptances(&sql, &statements, file, report);

    let findings = squawk::findings(squawk_bin, file, transactional)?;

    for f in findings {
        let line = f.line + 1;
        let statement = statements
            .iter()
            .rev()
            .find(|s| s.line <= line && line <= s.end_line);
        if let Some(s) = statement
            && EXISTING_TABLE_RULES.contains(&f.rule_name.as_str())
            && targets_only_tables_created_before(s, &statements)
        {
            continue;
        }
        let covering = acceptances.iter_mut().find(|a| {
            a.rules.contains(&f.rule_name)
                && a.statement
                    .is_some_and(|(from, to)| from <= line && line <= to)
        });
        if let Some(a) = covering {
            a.used = true;
            if !a.reason.is_empty() {
                report.accepted.push(Accepted {
                    file: file.to_path_buf(),
                    line,
                    rule: f.rule_name,
                    reason: a.reason.clone(),
                });
                continue;
            }
        }
        let mut help: Vec<String> = f.help.into_iter().map(|h| format!("help: {h}")).collect();
        help.extend(hint(&f.rule_name, transactional).map(|h| format!("help: {h}")));
        help.push(format!(
            "accept: `{ALLOW} {} -- <why it is safe here>` on the line before the statement",
            f.rule_name
        ));
        report.diagnostics.push(Diagnostic {
            level: Level::Error,
            file: file.to_path_buf(),
            line,
            column: f.column + 1,
            rule: f.rule_name,
            message: f.message,
            help,
        });
    }
    if transactional {
        for s in statements.iter().filter(|s| needs_no_transaction(&s.text)) {
            let already = report.diagnostics.iter().any(|d| {
                d.file == file
                    && d.rule == "ban-concurrent-index-creation-in-transaction"
                    && s.line <= d.line
                    && d.line <= s.end_line
            });
            if !already {
                report.diagnostics.push(Diagnostic {
                    level: Level::Error,
                    file: file.to_path_buf(),
                    line: s.line,
                    column: 1,
                    rule: NO_TRANSACTION_RULE.to_string(),
                    message: "this statement cannot run inside a transaction block, and this migration runs in one".to_string(),
                    help: vec![format!(
                        "help: make `{NO_TRANSACTION}` the file's first line (then every statement must be idempotent)"
                    )],
                });
            }
        }
    }
    for a in acceptances
        .iter()
        .filter(|a| !a.used && !a.reason.is_empty())
    {
        report.diagnostics.push(Diagnostic {
            level: Level::Warning,
            file: a.file.clone(),
            line: a.line,
            column: 1,
            rule: ACCEPTANCE_RULE.to_string(),
            message: format!(
                "this acceptance of {} matches no finding",
                a.rules.join(", ")
            ),
            help: vec![
                "help: remove it, or move it to the line before the statement it is meant for"
                    .to_string(),
            ],
        });
    }
    Ok(())
}

/// `CREATE INDEX CONCURRENTLY`, `DROP INDEX CONCURRENTLY`, `REINDEX … CONCURRENTLY`, `VACUUM`.
fn needs_no_transaction(statement: &str) -> bool {
    let lower = statement.to_lowercase();
    let words: Vec<&str> = lower.split_whitespace().collect();
    matches!(
        words.first(),
        Some(&"create") | Some(&"drop") | Some(&"reindex")
    ) && words.contains(&"concurrently")
        || words.first() == Some(&"vacuum")
}

/// Whether every table `s` locks was created by an earlier statement of the same file.
fn targets_only_tables_created_before(s: &sql::Statement, all: &[sql::Statement]) -> bool {
    let created: Vec<String> = all
        .iter()
        .take_while(|x| x.line < s.line)
        .filter_map(|x| plan::classify(&x.text).creates_table)
        .collect();
    let locks = plan::classify(&s.text).locks;
    !locks.is_empty()
        && locks.iter().all(|l| match &l.on {
            plan::On::Table(t) => created.contains(t),
            plan::On::TableOfIndex(_) => false,
        })
}

/// What to do about a rule in this project, beyond squawk's own help.
fn hint(rule: &str, transactional: bool) -> Option<String> {
    match rule {
        "require-concurrent-index-creation" | "require-concurrent-index-deletion" if transactional => Some(
            "CONCURRENTLY cannot run in a transaction: make `-- init-fn: no-transaction` the file's first line, and `IF NOT EXISTS` / `IF EXISTS` keeps a retried run idempotent".to_string(),
        ),
        "ban-concurrent-index-creation-in-transaction" => Some(
            "this migration runs in a transaction: make `-- init-fn: no-transaction` the file's first line".to_string(),
        ),
        "prefer-robust-stmts" => Some(
            "a no-transaction migration that fails half way is retried from its first statement: every statement must be safe to run twice".to_string(),
        ),
        "adding-required-field" | "adding-not-nullable-field" => Some(
            "add the column nullable (or with a constant DEFAULT), backfill in batches, then add a `CHECK (col IS NOT NULL) NOT VALID` constraint and VALIDATE it".to_string(),
        ),
        "constraint-missing-not-valid" | "adding-foreign-key-constraint" => Some(
            "add it `NOT VALID` in one migration (brief lock, no scan) and `VALIDATE CONSTRAINT` in the next (SHARE UPDATE EXCLUSIVE: reads and writes go on)".to_string(),
        ),
        _ => None,
    }
}
