//! `cargo xtask deploy|invoke|clean`: hands the command line to the `xtask-aws` binary (crate
//! `xtask/aws`). The AWS SDK service crates take minutes to compile on a small machine and only these
//! three commands need them, so they live in their own binary, built the first time one of them runs.
//! Two binaries with their own dependency sets share one target dir without rebuilding each other.

use std::ffi::OsString;

use xshell::{Shell, cmd};

/// Arguments passed through unchanged (`--help` included) to `xtask-aws <command>`
#[derive(clap::Args)]
#[command(disable_help_flag = true)]
pub struct Passthrough {
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
    args: Vec<OsString>,
}

impl Passthrough {
    /// Runs `xtask-aws <command> <args>`; exits with its exit code when it fails.
    pub fn run(self, sh: &Shell, command: &str) -> anyhow::Result<()> {
        let cargo = crate::cargo();
        let bin = crate::build::target_dir().join("debug/xtask-aws");
        if !bin.exists() {
            eprintln!(
                "{command}: first AWS command on this checkout: compiling the AWS SDK crates \
                 (xtask-aws, a few minutes once; the local commands never need them)"
            );
        }
        // Built, not `cargo run --quiet`: its Compiling lines show progress, and cargo's `Running`
        // line would echo the arguments.
        let build = crate::without_package_env(cmd!(
            sh,
            "{cargo} build --package xtask-aws --bin xtask-aws"
        ));
        let built = std::process::Command::from(build).status()?;
        if !built.success() {
            std::process::exit(built.code().unwrap_or(1));
        }
        let status = std::process::Command::new(&bin)
            .current_dir(sh.current_dir())
            .arg(command)
            .args(self.args)
            .status()?;
        if !status.success() {
            std::process::exit(status.code().unwrap_or(1));
        }
        Ok(())
    }
}
