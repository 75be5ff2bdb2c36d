//! In-file acceptances of lint findings (`-- init-fn: allow <rule> -- <reason>`), and the
//! `NNNN_name.allow` sidecar of a migration whose bytes can no longer change.

use std::path::{Path, PathBuf};

use super::{Diagnostic, Level, Report, sql};

/// An in-file acceptance: `-- init-fn: allow <rule>[, <rule>] -- <reason>` on the lines before a statement.
pub const ALLOW: &str = "-- init-fn: allow";
/// The rule name of a problem with an acceptance itself.
pub const ACCEPTANCE_RULE: &str = "init-fn-acceptance";

/// An acceptance comment, and the statement it applies to.
pub struct Acceptance {
    pub file: PathBuf,
    pub line: usize,
    pub rules: Vec<String>,
    pub reason: String,
    /// Lines of the statement it covers (the next one after the comment; the whole file from a sidecar).
    pub statement: Option<(usize, usize)>,
    pub used: bool,
}

/// Parses the acceptance comments of a file; one without a reason is an error right away.
pub fn acceptances(
    sql: &str,
    statements: &[sql::Statement],
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
