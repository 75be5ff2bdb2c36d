//! `cargo xtask lint`: squawk's rules on every migration, shown like compiler diagnostics, with in-file
//! acceptances that must give a reason. `cargo xtask test` runs it; `cargo xtask deploy` refuses to
//! ship a binary whose migrations have unaccepted findings.

use std::{
    fmt::Write as _,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, bail};
use serde::Deserialize;

// The function's own statement splitter and classifier (std only), without linking the function.
#[allow(dead_code)]
#[path = "../../init-fn/src/plan.rs"]
mod plan;

/// The squawk release `cargo xtask lint` installs into `.venv` when none is there.
pub const SQUAWK_VERSION: &str = "2.70.0";
/// An in-file acceptance: `-- init-fn: allow <rule>[, <rule>] -- <reason>` on the lines before a statement.
pub const ALLOW: &str = "-- init-fn: allow";
/// The first line that makes a migration run outside a transaction (as in `init_fn::migrate`).
const NO_TRANSACTION: &str = "-- init-fn: no-transaction";
/// Rules the engine makes moot: it sets `statement_timeout` and `lock_timeout` itself on every run.
const EXCLUDED: &[&str] = &["require-statement-timeout", "require-lock-timeout"];
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
/// The rule name of a problem with an acceptance itself.
pub const ACCEPTANCE_RULE: &str = "init-fn-acceptance";
/// The rule name of a statement that cannot run in the transaction the engine wraps the file in.
pub const NO_TRANSACTION_RULE: &str = "init-fn-needs-no-transaction";

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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Error,
    Warning,
}

/// One problem at one place.
#[derive(Debug, Clone)]
pub struct Diagnostic {
    pub level: Level,
    pub file: PathBuf,
    /// 1-based.
    pub line: usize,
    pub column: usize,
    pub rule: String,
    /// Why it hurts.
    pub message: String,
    /// How to fix it.
    pub help: Vec<String>,
}

/// A finding the file accepts, with the file's reason.
#[derive(Debug, Clone)]
pub struct Accepted {
    pub file: PathBuf,
    pub line: usize,
    pub rule: String,
    pub reason: String,
}

#[derive(Debug, Default)]
pub struct Report {
    pub files: usize,
    pub diagnostics: Vec<Diagnostic>,
    pub accepted: Vec<Accepted>,
}

impl Report {
    pub fn errors(&self) -> usize {
        self.count(Level::Error)
    }

    pub fn warnings(&self) -> usize {
        self.count(Level::Warning)
    }

    fn count(&self, level: Level) -> usize {
        self.diagnostics.iter().filter(|d| d.level == level).count()
    }

    /// Compiler-style text: each diagnostic with its source line, then a summary line.
    pub fn render(&self, verbose: bool) -> String {
        let mut out = String::new();
        for d in &self.diagnostics {
            let level = match d.level {
                Level::Error => "error",
                Level::Warning => "warning",
            };
            let shown = display(&d.file);
            let source = std::fs::read_to_string(&d.file).unwrap_or_default();
            let text = source.lines().nth(d.line.saturating_sub(1)).unwrap_or("");
            let gutter = " ".repeat(d.line.to_string().len());
            let _ = writeln!(out, "{level}[{}]: {}", d.rule, d.message);
            let _ = writeln!(out, "{gutter}--> {shown}:{}:{}", d.line, d.column);
            let _ = writeln!(out, "{gutter} |");
            let _ = writeln!(out, "{} | {text}", d.line);
            let _ = writeln!(out, "{gutter} |");
            for help in &d.help {
                let _ = writeln!(out, "{gutter} = {help}");
            }
            out.push('\n');
        }
        if verbose {
            for a in &self.accepted {
                let _ = writeln!(
                    out,
                    "accepted[{}]: {}:{}: {}",
                    a.rule,
                    display(&a.file),
                    a.line,
                    a.reason
                );
            }
        }
        let _ = writeln!(
            out,
            "lint: {} file(s), {} error(s), {} warning(s), {} accepted finding(s){}",
            self.files,
            self.errors(),
            self.warnings(),
            self.accepted.len(),
            if verbose || self.accepted.is_empty() {
                ""
            } else {
                " (--verbose lists them)"
            }
        );
        out
    }
}

fn display(p: &Path) -> String {
    p.strip_prefix(crate::project_root())
        .unwrap_or(p)
        .display()
        .to_string()
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

/// One finding as squawk's JSON reporter gives it (0-based line and column).
#[derive(Debug, Deserialize)]
struct SquawkFinding {
    line: usize,
    column: usize,
    message: String,
    help: Option<String>,
    rule_name: String,
}

/// An acceptance comment, and the statement it applies to.
struct Acceptance {
    file: PathBuf,
    line: usize,
    rules: Vec<String>,
    reason: String,
    /// First line of the statement it covers (the next one after the comment).
    statement: Option<(usize, usize)>,
    used: bool,
}

fn lint_file(squawk: &Path, file: &Path, report: &mut Report) -> anyhow::Result<()> {
    let sql =
        std::fs::read_to_string(file).with_context(|| format!("lint: read {}", file.display()))?;
    let transactional = sql.lines().next().map(str::trim) != Some(NO_TRANSACTION);
    let statements = plan::split(&sql);
    let mut acceptances = acceptances(&sql, &statements, file, report);

    let mut args = vec!["--reporter".to_string(), "json".to_string()];
    args.push(format!("--exclude={}", EXCLUDED.join(",")));
    if transactional {
        // The engine wraps the file in one transaction: squawk then knows what the file created.
        args.push("--assume-in-transaction".to_string());
    }
    let out = Command::new(squawk)
        .args(&args)
        .arg(file)
        .output()
        .with_context(|| format!("lint: run {}", squawk.display()))?;
    if !matches!(out.status.code(), Some(0) | Some(1)) {
        bail!(
            "lint: squawk failed on {} ({}): {}",
            file.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let findings: Vec<SquawkFinding> = if stdout.trim().is_empty() {
        Vec::new()
    } else {
        serde_json::from_str(&stdout)
            .with_context(|| format!("lint: squawk's JSON for {}: {stdout}", file.display()))?
    };

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
fn targets_only_tables_created_before(s: &plan::Statement, all: &[plan::Statement]) -> bool {
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

/// Parses the acceptance comments of a file; one without a reason is an error right away.
fn acceptances(
    sql: &str,
    statements: &[plan::Statement],
    file: &Path,
    report: &mut Report,
) -> Vec<Acceptance> {
    let mut out = Vec::new();
    // An applied migration's bytes never change (its checksum is in the ledger): its acceptances
    // live beside it, in `NNNN_name.allow`, as `allow <rule> -- <reason>` lines covering the file.
    let sidecar = file.with_extension("allow");
    let sidecar_text = std::fs::read_to_string(&sidecar).unwrap_or_default();
    let in_sidecar = sidecar_text
        .lines()
        .enumerate()
        .filter_map(|(i, l)| Some((i, l.trim().strip_prefix("allow ")?, true)));
    let in_file = sql
        .lines()
        .enumerate()
        .filter_map(|(i, l)| Some((i, l.trim().strip_prefix(ALLOW)?, false)));
    for (i, rest, whole_file) in in_file.chain(in_sidecar) {
        let file = if whole_file { &sidecar } else { file };
        let line = i + 1;
        let (rules, reason) = rest.split_once("--").unwrap_or((rest, ""));
        let rules: Vec<String> = rules
            .split(',')
            .map(|r| r.trim().to_string())
            .filter(|r| !r.is_empty())
            .collect();
        let reason = reason.trim().to_string();
        if reason.is_empty() || rules.is_empty() {
            report.diagnostics.push(Diagnostic {
                level: Level::Error,
                file: file.to_path_buf(),
                line,
                column: 1,
                rule: ACCEPTANCE_RULE.to_string(),
                message: if rules.is_empty() {
                    "acceptance names no rule".to_string()
                } else {
                    format!("acceptance of {} gives no reason", rules.join(", "))
                },
                help: vec![format!(
                    "help: write `{ALLOW} {} -- <why it is safe here>`: a reviewer must see why",
                    if rules.is_empty() {
                        "<rule>".to_string()
                    } else {
                        rules.join(", ")
                    }
                )],
            });
        }
        let statement = if whole_file {
            Some((1, usize::MAX))
        } else {
            statements
                .iter()
                .find(|s| s.line > line)
                .map(|s| (s.line, s.end_line))
        };
        out.push(Acceptance {
            file: file.to_path_buf(),
            line,
            rules,
            reason,
            statement,
            used: false,
        });
    }
    out
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

/// The squawk binary: `.venv/bin/squawk`, then `squawk` on PATH, else installed into `.venv` from PyPI.
pub fn ensure_squawk() -> anyhow::Result<PathBuf> {
    let root = crate::project_root();
    let venv = root.join(".venv");
    let in_venv = venv.join("bin/squawk");
    if in_venv.exists() {
        return Ok(in_venv);
    }
    if Command::new("squawk")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        return Ok(PathBuf::from("squawk"));
    }
    eprintln!("lint: squawk not found; installing squawk-cli {SQUAWK_VERSION} into .venv");
    let install = || -> anyhow::Result<()> {
        if !venv.join("bin/pip").exists() {
            run(Command::new("python3").args(["-m", "venv"]).arg(&venv))?;
        }
        run(Command::new(venv.join("bin/pip"))
            .args(["install", "--quiet", "--disable-pip-version-check"])
            .arg(format!("squawk-cli=={SQUAWK_VERSION}")))
    };
    install().context(
        "lint: squawk is missing and installing it failed; install it with \
         `python3 -m venv .venv && .venv/bin/pip install squawk-cli`",
    )?;
    Ok(in_venv)
}

fn run(cmd: &mut Command) -> anyhow::Result<()> {
    let status = cmd.status().with_context(|| format!("run {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?}: {status}");
    }
    Ok(())
}
