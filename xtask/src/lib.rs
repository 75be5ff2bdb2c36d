//! `cargo xtask`: build, run locally, test, deploy, invoke and clean the `init-fn` Lambda.
//! Every command lives in its own module; `main.rs` only parses flags and dispatches.

pub mod aws_commands;
pub mod bench;
pub mod build;
pub mod doctor;
pub mod error;
pub mod invoke_api;
pub mod lint;
pub mod local;
pub mod migrate;
pub mod plan_view;
pub mod schema;
pub mod serve;
pub mod test;
pub mod test_local;

use std::path::PathBuf;

/// The workspace root (the parent of `xtask/`).
pub fn project_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the workspace root")
        .to_path_buf()
}

/// The cargo that runs us (matklad's convention), falling back to `cargo` on PATH.
pub fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string())
}

/// Removes the per-package variables cargo sets for `cargo run` / `cargo test` children from `cmd`, so
/// a nested cargo build sees the same environment whoever starts it. Build scripts (ring's) declare
/// `rerun-if-env-changed` on `CARGO_PKG_NAME`, `CARGO_MANIFEST_DIR` and the like: inherited values
/// differing between `cargo xtask` and `cargo test` would rebuild the release bootstrap every time.
pub fn without_package_env(mut cmd: xshell::Cmd<'_>) -> xshell::Cmd<'_> {
    const PREFIXES: &[&str] = &[
        "CARGO_PKG_",
        "CARGO_MANIFEST_",
        "CARGO_CRATE_",
        "CARGO_BIN_",
    ];
    const NAMES: &[&str] = &["CARGO_PRIMARY_PACKAGE", "CARGO_TARGET_TMPDIR", "OUT_DIR"];
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        if PREFIXES.iter().any(|p| name.starts_with(p)) || NAMES.contains(&name.as_ref()) {
            cmd = cmd.env_remove(name.as_ref());
        }
    }
    cmd
}

/// `CI=true` (or `1`): missing services are failures, snapshots are never written.
pub fn is_ci() -> bool {
    matches!(std::env::var("CI").as_deref(), Ok("true") | Ok("1"))
}

/// A tokio runtime for one command (xtask's commands are synchronous at the top).
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}

/// `path` relative to the project root when it is inside it (for output that must not show where
/// this checkout lives), else as is.
pub fn relative(path: &std::path::Path) -> String {
    path.strip_prefix(project_root())
        .unwrap_or(path)
        .display()
        .to_string()
}
