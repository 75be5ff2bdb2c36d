//! Embeds every `sql/NNNN_name.sql` into the binary: writes `$OUT_DIR/migrations.rs`, a slice of
//! `(version, name, sql)` sorted by version. Adding a migration is adding a file.
//! `INIT_FN_SQL_DIR` points at another directory (used by `cargo xtask bench --scale` to embed
//! generated migrations); unset, it is the workspace's `sql/`. A file the function's splitter cannot
//! split (an unterminated string, comment or body) fails the build, naming the file and line.

use std::{env, fs, path::PathBuf};

// The function's own splitter (std only): what fails here would fail at apply.
#[allow(dead_code)]
#[path = "src/sql.rs"]
mod sql;

fn main() {
    println!("cargo:rerun-if-env-changed=INIT_FN_SQL_DIR");
    let sql_dir = match env::var_os("INIT_FN_SQL_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap()).join("../sql"),
    };
    let sql_dir = sql_dir
        .canonicalize()
        .expect("sql/ directory next to init-fn/ (or INIT_FN_SQL_DIR)");
    println!("cargo:rerun-if-changed={}", sql_dir.display());
    let mut entries = Vec::new();
    for entry in fs::read_dir(&sql_dir).expect("read sql/") {
        let path = entry.expect("sql/ entry").path();
        println!("cargo:rerun-if-changed={}", path.display());
        let file = path.file_name().unwrap().to_string_lossy().into_owned();
        let Some(stem) = file.strip_suffix(".sql") else {
            continue;
        };
        let (num, name) = stem
            .split_once('_')
            .unwrap_or_else(|| panic!("sql/{file}: name must be NNNN_description.sql"));
        let version: u32 = num
            .parse()
            .unwrap_or_else(|_| panic!("sql/{file}: version prefix `{num}` is not a number"));
        assert!(version > 0, "sql/{file}: versions start at 1");
        let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("sql/{file}: {e}"));
        if let Err(e) = sql::split(&text) {
            panic!("sql/{file}: {e}");
        }
        entries.push((version, name.to_string(), path));
    }
    entries.sort_by_key(|e| e.0);
    for pair in entries.windows(2) {
        assert!(
            pair[0].0 != pair[1].0,
            "sql/: version {} appears twice",
            pair[0].0
        );
    }
    let mut out = String::from("&[\n");
    for (version, name, path) in &entries {
        out.push_str(&format!(
            "    ({version}, {name:?}, include_str!({:?})),\n",
            path.display().to_string()
        ));
    }
    out.push_str("]\n");
    fs::write(
        PathBuf::from(env::var("OUT_DIR").unwrap()).join("migrations.rs"),
        out,
    )
    .unwrap();
}
