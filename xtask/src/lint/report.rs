//! What `cargo xtask lint` found: diagnostics and accepted findings, rendered like compiler output.

use std::{
    fmt::Write as _,
    path::{Path, PathBuf},
};

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
