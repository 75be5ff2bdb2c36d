//! `cargo xtask`: build, run locally, test, deploy, invoke and clean the `init-fn` Lambda.
//! Every command lives in its own module; `main.rs` only parses flags and dispatches.

pub mod aws;
pub mod bench;
pub mod build;
pub mod clean;
pub mod deploy;
pub mod invoke;
pub mod invoke_api;
pub mod local;
pub mod preflight;
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

/// `CI=true` (or `1`): missing services are failures, snapshots are never written.
pub fn is_ci() -> bool {
    matches!(std::env::var("CI").as_deref(), Ok("true") | Ok("1"))
}
