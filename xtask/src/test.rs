//! `cargo xtask test`: the README test command (fmt check, clippy, every test).

use xshell::{Shell, cmd};

/// Check formatting, run clippy with warnings as errors, then every unit and integration test
#[derive(clap::Args)]
pub struct Test {}

impl Test {
    pub fn run(self, sh: &Shell) -> anyhow::Result<()> {
        let cargo = crate::cargo();
        cmd!(sh, "{cargo} fmt --all -- --check").run()?;
        cmd!(sh, "{cargo} clippy --workspace --all-targets -- -D warnings").run()?;
        cmd!(sh, "{cargo} test --workspace").run()?;
        Ok(())
    }
}
