//! `cargo xtask migrate new`: numbering and refusals, in a temporary migrations directory.

use std::path::Path;

use xtask::migrate::new_migration;

fn touch(dir: &Path, file: &str) {
    std::fs::write(dir.join(file), "SELECT 1;\n").unwrap();
}

#[test]
fn numbers_the_next_version_and_writes_the_rules() {
    let dir = tempfile::tempdir().unwrap();
    let first = new_migration(dir.path(), "initial_schema").unwrap();
    assert_eq!(first, dir.path().join("0001_initial_schema.sql"));
    let second = new_migration(dir.path(), "documents_status_index").unwrap();
    assert_eq!(second, dir.path().join("0002_documents_status_index.sql"));
    let header = std::fs::read_to_string(&second).unwrap();
    assert!(
        header.starts_with("-- 0002 documents_status_index: "),
        "{header}"
    );
    for rule in [
        "Never edit this file once it has been applied",
        "-- init-fn: no-transaction",
        "idempotent",
        "-- init-fn: allow <rule> -- <why it is safe here>",
    ] {
        assert!(header.contains(rule), "missing {rule:?} in\n{header}");
    }
    // The header alone is a valid, empty migration: no statements, and the engine keeps its transaction.
    let m = init_fn::engine::run::Migration::new(2, "documents_status_index", &header);
    assert!(
        init_fn::engine::run::split_statements(&header)
            .unwrap()
            .is_empty()
    );
    assert!(m.transactional);
    // Other files beside the migrations (the lint sidecar) do not count.
    std::fs::write(dir.path().join("0001_initial_schema.allow"), "").unwrap();
    assert!(
        new_migration(dir.path(), "third")
            .unwrap()
            .ends_with("0003_third.sql")
    );
}

#[test]
fn against_the_project_sql_dir_it_would_write_0002() {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(xtask::project_root().join("sql")).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, dir.path().join(path.file_name().unwrap())).unwrap();
    }
    let next = init_fn::engine::run::embedded().last().unwrap().version + 1;
    let path = new_migration(dir.path(), "documents_status_index").unwrap();
    assert_eq!(
        path.file_name().unwrap().to_string_lossy(),
        format!("{next:04}_documents_status_index.sql")
    );
}

#[test]
fn refuses_bad_names() {
    let dir = tempfile::tempdir().unwrap();
    for bad in [
        "",
        "Add-Index",
        "add index",
        "add-index",
        "ADD",
        "ünïcode",
        "a/b",
        "../x",
    ] {
        let err = refused(dir.path(), bad);
        assert!(err.contains("[a-z0-9_]+"), "{bad:?}: {err}");
    }
}

/// The error of a refused `migrate new`, checking that it wrote nothing.
fn refused(dir: &Path, name: &str) -> String {
    let before = std::fs::read_dir(dir).unwrap().count();
    let err = new_migration(dir, name).unwrap_err().to_string();
    assert_eq!(std::fs::read_dir(dir).unwrap().count(), before, "{err}");
    err
}

#[test]
fn refuses_a_gap_a_duplicate_or_a_reused_name() {
    let gap = tempfile::tempdir().unwrap();
    touch(gap.path(), "0001_a.sql");
    touch(gap.path(), "0003_c.sql");
    let err = refused(gap.path(), "d");
    assert!(
        err.contains("version 2 is missing before 0003_c.sql"),
        "{err}"
    );

    let dup = tempfile::tempdir().unwrap();
    touch(dup.path(), "0001_a.sql");
    touch(dup.path(), "0002_b.sql");
    touch(dup.path(), "0002_c.sql");
    let err = refused(dup.path(), "d");
    assert!(err.contains("version 2 appears twice"), "{err}");

    let reused = tempfile::tempdir().unwrap();
    touch(reused.path(), "0001_a.sql");
    let err = refused(reused.path(), "a");
    assert!(err.contains("already has the name `a`"), "{err}");

    let stray = tempfile::tempdir().unwrap();
    touch(stray.path(), "initial.sql");
    let err = refused(stray.path(), "b");
    assert!(err.contains("not named NNNN_description.sql"), "{err}");
}
