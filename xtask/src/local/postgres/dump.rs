//! The `public` schema as `pg_dump --schema-only` prints it, made comparable: the arguments every
//! provider passes, running a host `pg_dump`, and what is dropped from its output.

use std::process::Stdio;

use anyhow::{Context, bail};

/// The ledger is the engine's bookkeeping, not part of the schema being compared.
const LEDGER_TABLE: &str = "public._init_fn_migrations";

/// `pg_dump`'s arguments before the connection ones: schema only, `public`, no ledger, owners or
/// privileges.
pub fn args() -> Vec<String> {
    [
        "--schema-only",
        "--schema=public",
        &format!("--exclude-table={LEDGER_TABLE}"),
        "--no-owner",
        "--no-privileges",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// Runs a host `pg_dump` command and returns its output.
pub async fn run(mut cmd: tokio::process::Command) -> anyhow::Result<String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .await
        .context("postgres: run pg_dump")?;
    if !out.status.success() {
        bail!(
            "postgres: pg_dump failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    String::from_utf8(out.stdout).context("postgres: pg_dump output is not UTF-8")
}

/// Drop what differs between runs and versions of pg_dump but not between schemas.
pub fn normalize_dump(raw: &str) -> String {
    let mut out = String::new();
    for line in raw.lines() {
        let trimmed = line.trim_end();
        if trimmed.is_empty()
            || trimmed.starts_with("--")
            || trimmed.starts_with("SET ")
            || trimmed.starts_with("SELECT pg_catalog.set_config")
            || trimmed.starts_with("\\restrict")
            || trimmed.starts_with("\\unrestrict")
        {
            continue;
        }
        out.push_str(trimmed);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_dumps() {
        let raw = "--\n-- PostgreSQL database dump\n--\n\\restrict abc\nSET x = 1;\n\
                   SELECT pg_catalog.set_config('search_path', '', false);\n\n\
                   CREATE TABLE public.t (\n    id integer\n);\n\n\\unrestrict abc\n";
        assert_eq!(
            normalize_dump(raw),
            "CREATE TABLE public.t (\n    id integer\n);\n"
        );
    }
}
