//! `cargo xtask lint` with the real squawk binary: one fixture per rule family in `tests/fixtures/lint/`,
//! each failing with the right rule on the right line; acceptances with and without a reason; `sql/`
//! clean. A missing squawk is installed or fails the test, never skipped.

use std::path::PathBuf;

use xtask::lint::{self, Level, Report};

fn fixture(name: &str) -> PathBuf {
    xtask::project_root().join("tests/fixtures/lint").join(name)
}

fn lint_fixture(name: &str) -> Report {
    lint::lint(&[fixture(name)]).expect("squawk runs")
}

/// `(level, rule, line)` of every diagnostic, in order.
fn found(report: &Report) -> Vec<(&'static str, &str, usize)> {
    report
        .diagnostics
        .iter()
        .map(|d| {
            let level = match d.level {
                Level::Error => "error",
                Level::Warning => "warning",
            };
            (level, d.rule.as_str(), d.line)
        })
        .collect()
}

#[test]
fn index_without_concurrently_on_an_existing_table() {
    let r = lint_fixture("index_not_concurrent.sql");
    assert_eq!(
        found(&r),
        [("error", "require-concurrent-index-creation", 2)]
    );
    let text = r.render(false);
    assert!(
        text.contains("--> tests/fixtures/lint/index_not_concurrent.sql:2:1"),
        "{text}"
    );
    assert!(text.contains("help: Use `concurrently`"), "{text}");
    assert!(text.contains("-- init-fn: no-transaction"), "{text}");
    assert!(
        text.contains("1 file(s), 1 error(s), 0 warning(s), 0 accepted finding(s)"),
        "{text}"
    );
}

#[test]
fn not_null_column_without_default() {
    assert_eq!(
        found(&lint_fixture("not_null_without_default.sql")),
        [("error", "adding-required-field", 2)]
    );
}

#[test]
fn volatile_default() {
    assert_eq!(
        found(&lint_fixture("volatile_default.sql")),
        [("error", "adding-field-with-default", 3)]
    );
}

#[test]
fn check_and_foreign_key_without_not_valid() {
    assert_eq!(
        found(&lint_fixture("constraint_without_not_valid.sql")),
        [
            ("error", "constraint-missing-not-valid", 2),
            ("error", "constraint-missing-not-valid", 4),
            ("error", "adding-foreign-key-constraint", 4),
        ]
    );
}

#[test]
fn column_type_change() {
    assert_eq!(
        found(&lint_fixture("type_change.sql")),
        [("error", "changing-column-type", 2)]
    );
}

#[test]
fn drops() {
    assert_eq!(
        found(&lint_fixture("drop.sql")),
        [
            ("error", "ban-drop-column", 2),
            ("error", "ban-drop-table", 3)
        ]
    );
}

#[test]
fn existing_table_rules_skip_tables_created_earlier_in_the_file() {
    assert_eq!(
        found(&lint_fixture("created_in_same_file.sql")),
        [("error", "require-concurrent-index-creation", 11)]
    );
}

#[test]
fn concurrently_needs_a_no_transaction_file() {
    assert_eq!(
        found(&lint_fixture("concurrently_in_transaction.sql")),
        [("error", lint::NO_TRANSACTION_RULE, 2)]
    );
    let fixed = lint_fixture("no_transaction_concurrently.sql");
    assert_eq!(found(&fixed), []);
    assert_eq!(fixed.errors(), 0);
}

#[test]
fn acceptance_with_a_reason_accepts_the_finding() {
    let r = lint_fixture("accepted_with_reason.sql");
    assert_eq!(found(&r), []);
    assert_eq!(r.accepted.len(), 1);
    assert_eq!(r.accepted[0].rule, "require-concurrent-index-creation");
    assert_eq!(r.accepted[0].line, 2);
    assert!(r.accepted[0].reason.starts_with("documents holds"));
}

#[test]
fn acceptance_without_a_reason_is_an_error_and_accepts_nothing() {
    let r = lint_fixture("accepted_without_reason.sql");
    assert_eq!(
        found(&r),
        [
            ("error", lint::ACCEPTANCE_RULE, 1),
            ("error", "require-concurrent-index-creation", 2),
        ]
    );
    assert!(r.render(false).contains("gives no reason"));
}

#[test]
fn acceptance_that_matches_nothing_is_a_warning() {
    let r = lint_fixture("acceptance_matches_nothing.sql");
    assert_eq!(found(&r), [("warning", lint::ACCEPTANCE_RULE, 2)]);
    assert_eq!(r.errors(), 0);
}

#[test]
fn the_project_migrations_are_clean() {
    let r = lint::lint_migrations().expect("squawk runs");
    assert_eq!(found(&r), [], "{}", r.render(true));
    // 0001 is the original's DDL verbatim: its style findings are accepted beside it, each with a reason.
    assert!(!r.accepted.is_empty());
    assert!(r.accepted.iter().all(|a| {
        a.file.ends_with("sql/0001_initial_schema.sql") && a.reason.contains("original")
    }));
}

#[test]
fn a_sidecar_acceptance_without_reason_or_match_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let sql = dir.path().join("0002_x.sql");
    std::fs::write(&sql, "ALTER TABLE documents DROP COLUMN error_message;\n").unwrap();
    std::fs::write(
        dir.path().join("0002_x.allow"),
        "allow ban-drop-column\nallow ban-drop-table -- nothing drops a table\n",
    )
    .unwrap();
    let r = lint::lint(&[dir.path().to_path_buf()]).unwrap();
    assert_eq!(
        found(&r),
        [
            ("error", lint::ACCEPTANCE_RULE, 1),
            ("error", "ban-drop-column", 1),
            ("warning", lint::ACCEPTANCE_RULE, 2),
        ]
    );
}

#[test]
fn an_unterminated_body_is_an_error_at_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let sql = dir.path().join("0002_x.sql");
    std::fs::write(
        &sql,
        "CREATE TABLE t (id int);\n\nDO $body$\nBEGIN\n  PERFORM 1;\nEND $bod$;\n",
    )
    .unwrap();
    let r = lint::lint(&[sql]).unwrap();
    assert_eq!(found(&r), [("error", lint::UNTERMINATED_RULE, 3)]);
    let text = r.render(false);
    assert!(
        text.contains("unterminated dollar-quoted string $body$ starting at line 3"),
        "{text}"
    );
    assert!(text.contains("0002_x.sql:3:1"), "{text}");
}

#[test]
fn acceptances_cover_the_statements_psql_sees() {
    // `\'` in an E'' string is a quote: a splitter that ended the string there would make the rest
    // of the file one statement starting at line 1, and the acceptance would cover nothing.
    let dir = tempfile::tempdir().unwrap();
    let sql = dir.path().join("0002_x.sql");
    std::fs::write(
        &sql,
        "COMMENT ON TABLE documents IS E'it\\'s; here';\n\
         -- init-fn: allow require-concurrent-index-creation -- documents is empty when this runs\n\
         CREATE INDEX idx_documents_name ON documents (file_name);\n",
    )
    .unwrap();
    let r = lint::lint(&[sql]).unwrap();
    assert_eq!(found(&r), [], "{}", r.render(true));
    assert_eq!(r.accepted.len(), 1, "{}", r.render(true));
}
