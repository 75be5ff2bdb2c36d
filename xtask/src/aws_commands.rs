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
        let args = self.args;
        let cmd = crate::without_package_env(cmd!(
            sh,
            "{cargo} run --quiet --package xtask-aws --bin xtask-aws -- {command} {args...}"
        ));
        let status = std::process::Command::from(cmd).status()?;
        if !status.success() {
            std::process::exit(status.code().unwrap_or(1));
        }
        Ok(())
    }
}
