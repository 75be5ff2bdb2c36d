//! `cargo xtask`: build, run locally, test, deploy, invoke and clean the `init-fn` Lambda.
//! Every command lives in its own module; [`main`] parses flags and dispatches, for both binaries:
//! `xtask` (`main.rs`) and `xtask-docker` (`bin/xtask_docker.rs`, the same CLI with the `docker`
//! feature, which `xtask` builds and hands over to when a command needs Docker).

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
use std::process::ExitCode;

use clap::{Parser, Subcommand};

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
    for name in package_env_names() {
        cmd = cmd.env_remove(name);
    }
    cmd
}

/// The variables of this process's environment that cargo sets per package for `cargo run`/`cargo
/// test` (`CARGO_PKG_*`, `CARGO_MANIFEST_*`, `OUT_DIR`…), which a shell's `cargo` would not have.
pub fn package_env_names() -> Vec<String> {
    const PREFIXES: &[&str] = &[
        "CARGO_PKG_",
        "CARGO_MANIFEST_",
        "CARGO_CRATE_",
        "CARGO_BIN_",
    ];
    const NAMES: &[&str] = &["CARGO_PRIMARY_PACKAGE", "CARGO_TARGET_TMPDIR", "OUT_DIR"];
    std::env::vars_os()
        .map(|(name, _)| name.to_string_lossy().into_owned())
        .filter(|name| {
            PREFIXES.iter().any(|p| name.starts_with(p)) || NAMES.contains(&name.as_str())
        })
        .collect()
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

/// The whole `cargo xtask` command line: parse, dispatch, exit code (both binaries' `main`).
pub fn main() -> ExitCode {
    error::exit(run_cli())
}

/// Build, run locally, test, deploy, invoke and clean the `init-fn` Lambda.
#[derive(Parser)]
#[command(name = "cargo xtask", bin_name = "cargo xtask", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    Test(crate::test::Test),
    TestLocal(crate::test_local::TestLocal),
    Bench(crate::bench::Bench),
    Build(crate::build::Build),
    /// Deploy the function: discovery, preflight, least-privilege role, create or update (`--help` for flags)
    Deploy(crate::aws_commands::Passthrough),
    /// Invoke the deployed function and show its report and log tail (`--help` for flags)
    Invoke(crate::aws_commands::Passthrough),
    /// Remove the function and its role (`--help` for flags)
    Clean(crate::aws_commands::Passthrough),
    /// Write a CloudFormation or SAM template of exactly what deploy creates (`--help` for flags)
    Template(crate::aws_commands::Passthrough),
    /// Show the function's log lines by invocation, failures marked; --follow (`--help` for flags)
    Logs(crate::aws_commands::Passthrough),
    /// Deploy, invoke once, then clean up unless --keep, as the original script (`--help` for flags)
    Run(crate::aws_commands::Passthrough),
    Serve(crate::serve::Serve),
    Doctor(crate::doctor::Doctor),
    Lint(crate::lint::Lint),
    Migrate(crate::migrate::Migrate),
    Schema(crate::schema::Schema),
}

fn run_cli() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let sh = xshell::Shell::new()?;
    sh.change_dir(project_root());
    match cli.command {
        Command::Test(cmd) => cmd.run(&sh),
        Command::TestLocal(cmd) => cmd.run(&sh),
        Command::Bench(cmd) => cmd.run(&sh),
        Command::Build(cmd) => cmd.run(&sh),
        Command::Deploy(cmd) => cmd.run(&sh, "deploy"),
        Command::Invoke(cmd) => cmd.run(&sh, "invoke"),
        Command::Clean(cmd) => cmd.run(&sh, "clean"),
        Command::Template(cmd) => cmd.run(&sh, "template"),
        Command::Logs(cmd) => cmd.run(&sh, "logs"),
        Command::Run(cmd) => cmd.run(&sh, "run"),
        Command::Serve(cmd) => cmd.run(&sh),
        Command::Doctor(cmd) => cmd.run(&sh),
        Command::Lint(cmd) => cmd.run(&sh),
        Command::Migrate(cmd) => cmd.run(&sh),
        Command::Schema(cmd) => cmd.run(&sh),
    }
}
