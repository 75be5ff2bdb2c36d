//! libpg_query as the judge of statement splitting: `tests/pglast_split.py` under the project's
//! `.venv` python (pglast, installed by `cargo xtask doctor --fix`), one process for all files.

use std::{
    io::{BufRead, BufReader, Write},
    process::{Command, Stdio},
};

use anyhow::{Context, bail};
use serde_json::{Value, json};

/// A statement as PostgreSQL's scanner sees it: its tokens, comments and whitespace gone.
pub type Tokens = Vec<String>;

/// How libpg_query split one file, and init-fn's statements scanned the same way.
pub struct Verdict {
    pub theirs: Vec<Tokens>,
    pub mine: Vec<Tokens>,
}

/// Asks libpg_query about every `(sql, init-fn's statements)` pair; `Err` inside when it rejects a file.
pub fn judge(files: &[(String, Vec<String>)]) -> anyhow::Result<Vec<Result<Verdict, String>>> {
    let python = crate::harness::root().join(".venv/bin/python");
    if !python.exists() {
        bail!(
            "{} is missing: the differential splitter tests need pglast in the project's .venv; run `cargo xtask doctor --fix`",
            python.display()
        );
    }
    let script = crate::harness::root().join("tests/pglast_split.py");
    let mut child = Command::new(&python)
        .arg(&script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("run {} {}", python.display(), script.display()))?;
    let mut stdin = child.stdin.take().expect("piped stdin");
    let requests: Vec<String> = files
        .iter()
        .map(|(sql, mine)| json!({"sql": sql, "mine": mine}).to_string())
        .collect();
    // Written from another thread: python answers while it reads, and both pipes have a bounded buffer.
    let writer = std::thread::spawn(move || -> std::io::Result<()> {
        for r in requests {
            writeln!(stdin, "{r}")?;
        }
        Ok(())
    });
    let mut verdicts = Vec::new();
    for line in BufReader::new(child.stdout.take().expect("piped stdout")).lines() {
        let answer: Value = serde_json::from_str(&line?).context("pglast_split.py answer")?;
        verdicts.push(match answer.get("error").and_then(Value::as_str) {
            Some(e) => Err(e.to_string()),
            None => Ok(Verdict {
                theirs: serde_json::from_value(answer["theirs"].clone())?,
                mine: serde_json::from_value(answer["mine"].clone())?,
            }),
        });
    }
    let out = child.wait_with_output()?;
    let written = writer.join().expect("writer thread");
    if !out.status.success() || verdicts.len() != files.len() {
        bail!(
            "{} failed ({}, {} of {} answers): {}{}",
            script.display(),
            out.status,
            verdicts.len(),
            files.len(),
            String::from_utf8_lossy(&out.stderr).trim(),
            if String::from_utf8_lossy(&out.stderr).contains("No module named 'pglast'") {
                "; run `cargo xtask doctor --fix`"
            } else {
                ""
            }
        );
    }
    written.context("writing to pglast_split.py")?;
    Ok(verdicts)
}
