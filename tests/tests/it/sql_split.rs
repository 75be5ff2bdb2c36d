//! The function's statement splitter against PostgreSQL's own parser (libpg_query via pglast): the
//! same statements, token for token, on a corpus of realistic migrations for this schema and on
//! 10,000 generated files. Any disagreement fails, printing the file.

use std::path::PathBuf;

use tests::{harness::root, pglast, sql_gen};

/// Generated files: at least the 10,000 the issue asks for.
const GENERATED: u64 = 10_000;

/// Splits each `(name, sql)` with init-fn and libpg_query; panics listing every disagreement.
fn agree(what: &str, files: &[(String, String)]) -> anyhow::Result<()> {
    let mut problems = Vec::new();
    let mut asked = Vec::new();
    for (name, sql) in files {
        match init_fn::sql::split(sql) {
            Ok(statements) => asked.push((
                sql.clone(),
                statements.into_iter().map(|s| s.text).collect(),
            )),
            Err(e) => {
                problems.push(format!("{name}: init-fn cannot split it: {e}\n{sql}"));
                asked.push((sql.clone(), Vec::new()));
            }
        }
    }
    let verdicts = pglast::judge(&asked)?;
    let mut statements = 0;
    for ((name, sql), verdict) in files.iter().zip(verdicts) {
        match verdict {
            Err(e) => problems.push(format!("{name}: {e}\n{sql}")),
            Ok(v) if v.mine != v.theirs => problems.push(format!(
                "{name}: init-fn splits it into {} statement(s), libpg_query into {}\n--- file ---\n{sql}\n--- init-fn ---\n{}\n--- libpg_query ---\n{}",
                v.mine.len(),
                v.theirs.len(),
                show(&v.mine),
                show(&v.theirs)
            )),
            Ok(v) => statements += v.theirs.len(),
        }
    }
    eprintln!(
        "sql_split: {what}: {} file(s), {statements} statement(s), {} disagreement(s)",
        files.len(),
        problems.len()
    );
    assert!(
        problems.is_empty(),
        "{} of {} {what} file(s) disagree with libpg_query:\n\n{}",
        problems.len(),
        files.len(),
        problems
            .iter()
            .take(5)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n\n")
    );
    Ok(())
}

fn show(statements: &[pglast::Tokens]) -> String {
    statements
        .iter()
        .enumerate()
        .map(|(i, t)| format!("[{}] {}", i + 1, t.join(" ")))
        .collect::<Vec<_>>()
        .join("\n")
}

fn sql_files(dir: PathBuf) -> anyhow::Result<Vec<(String, String)>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(&dir)? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "sql") {
            let name = path.strip_prefix(root())?.display().to_string();
            files.push((name, std::fs::read_to_string(&path)?));
        }
    }
    files.sort();
    Ok(files)
}

#[test]
fn realistic_migrations_split_as_libpg_query_splits_them() -> anyhow::Result<()> {
    let mut files = sql_files(root().join("tests/fixtures/sql_corpus"))?;
    assert!(
        files.len() >= 10,
        "the corpus is tests/fixtures/sql_corpus/*.sql"
    );
    files.extend(sql_files(root().join("sql"))?);
    agree("corpus", &files)
}

#[test]
fn generated_files_split_as_libpg_query_splits_them() -> anyhow::Result<()> {
    let files: Vec<(String, String)> = (0..GENERATED)
        .map(|seed| (format!("generated file, seed {seed}"), sql_gen::file(seed)))
        .collect();
    agree("generated", &files)
}

#[test]
fn the_generator_covers_every_lexical_form() {
    let all: String = (0..GENERATED).map(sql_gen::file).collect();
    for piece in [
        "E'",
        "\\'",
        "U&'",
        "UESCAPE",
        "U&\"",
        "\"\"",
        "''",
        "B'",
        "X'",
        "$$",
        "$body$",
        "$é$",
        "/*",
        "--",
        "BEGIN ATOMIC",
        "CASE",
        "DO ALSO (",
        "$1",
        "a$b",
        "'\n",
        "-- init-fn: no-transaction",
    ] {
        assert!(all.contains(piece), "no generated file holds {piece:?}");
    }
    let nested = all.split(" /*").skip(1).any(|c| {
        let end = c.find("*/").unwrap_or(c.len());
        c[..end].contains("/*")
    });
    assert!(nested, "no generated file nests a comment");
    assert_eq!(sql_gen::file(7), sql_gen::file(7), "deterministic");
}
