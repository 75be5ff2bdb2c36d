//! Embeds every `sql/NNNN_name.sql` into the binary: writes `$OUT_DIR/migrations.rs`, a slice of
//! `(version, name, sql)` sorted by version. Adding a migration is adding a file.
//! `INIT_FN_SQL_DIR` points at another directory (used by `cargo xtask bench --scale` to embed
//! generated migrations); unset, it is the workspace's `sql/`. A file the function's splitter cannot
//! split (an unterminated string, comment or body) fails the build, naming the file and line.
//! Also embeds `sql/schema.txt` (the expected schema `verify` compares with, written by
//! `cargo xtask schema`) as `$OUT_DIR/schema.rs`: missing or unreadable under `sql/`, the build fails
//! saying how to write it; a directory from `INIT_FN_SQL_DIR` may go without one (`None`).

use std::{env, fs, path::PathBuf};

// The function's own splitter (std only): what fails here would fail at apply.
#[allow(dead_code)]
#[path = "src/sql.rs"]
mod sql;
// The text form of the expected schema (std only): a file verify could not read fails here.
#[allow(dead_code)]
#[path = "src/schema/model.rs"]
mod schema;

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
    embed_schema(&sql_dir, env::var_os("INIT_FN_SQL_DIR").is_some());
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

fn embed_schema(sql_dir: &std::path::Path, other_dir: bool) {
    let path = sql_dir.join("schema.txt");
    println!("cargo:rerun-if-changed={}", path.display());
    let out = match fs::read_to_string(&path) {
        Ok(text) => {
            if let Err(e) = schema::Schema::parse(&text) {
                panic!("sql/schema.txt: {e}; regenerate it with `cargo xtask schema`");
            }
            format!("Some(include_str!({:?}))\n", path.display().to_string())
        }
        Err(_) if other_dir => "None\n".to_string(),
        Err(e) => panic!(
            "sql/schema.txt: {e}: the expected schema verify compares with is missing; write it with `cargo xtask schema`"
        ),
    };
    fs::write(
        PathBuf::from(env::var("OUT_DIR").unwrap()).join("schema.rs"),
        out,
    )
    .unwrap();
}
