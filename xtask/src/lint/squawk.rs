//! squawk, the migration linter `cargo xtask lint` runs: found or installed into `.venv`, run on one
//! file, its JSON findings read.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, bail};
use serde::Deserialize;

/// The squawk release `cargo xtask lint` installs into `.venv` when none is there.
pub const SQUAWK_VERSION: &str = "2.70.0";
/// Rules the engine makes moot: it sets `statement_timeout` and `lock_timeout` itself on every run.
const EXCLUDED: &[&str] = &["require-statement-timeout", "require-lock-timeout"];

/// One finding as squawk's JSON reporter gives it (0-based line and column).
#[derive(Debug, Deserialize)]
pub struct Finding {
    pub line: usize,
    pub column: usize,
    pub message: String,
    pub help: Option<String>,
    pub rule_name: String,
}

/// squawk's findings on `file`; `transactional` when the engine runs it in one transaction.
pub fn findings(squawk: &Path, file: &Path, transactional: bool) -> anyhow::Result<Vec<Finding>> {
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
    let findings: Vec<Finding> = if stdout.trim().is_empty() {
        Vec::new()
    } else {
        serde_json::from_str(&stdout)
            .with_context(|| format!("lint: squawk's JSON for {}: {stdout}", file.display()))?
    };
    Ok(findings)
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
