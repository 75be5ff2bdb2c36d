//! `cargo xtask test`: the README test command (fmt check, lint, clippy, every test, test-local runs).

use std::time::Instant;

use xshell::{Shell, cmd};

/// Check formatting, lint sql/, run clippy with warnings as errors, run every unit and integration test, then
/// `test-local` on Docker Postgres, under AWS's RIE on a local cluster, and with the arm64 Lambda bootstrap
/// (the shipped `[profile.release]` build) under qemu-user
#[derive(clap::Args)]
pub struct Test {
    /// Skip the `test-local` runs (fmt, clippy and `cargo test` only)
    #[arg(long)]
    no_test_local: bool,
}

impl Test {
    pub fn run(self, sh: &Shell) -> anyhow::Result<()> {
        let cargo = crate::cargo();
        let started = Instant::now();
        let step = |name: &str| eprintln!("\n== test [{:>4}s] {name}", started.elapsed().as_secs());
        // Before compiling anything: install what can be installed, or stop with doctor's list.
        step("setup (cargo xtask doctor's list for test)");
        crate::doctor::setup(sh, crate::doctor::test_needs())?;
        // The venv's tools (moto_server, squawk, python -m ziglang) for everything below.
        let venv_bin = crate::project_root().join(".venv/bin");
        let path = std::env::join_paths(std::iter::once(venv_bin).chain(std::env::split_paths(
            &std::env::var_os("PATH").unwrap_or_default(),
        )))?;
        let _path = sh.push_env("PATH", path);
        // Nested cargo runs as from a shell: without the variables `cargo run` set for us (ring's build
        // script reruns when CARGO_PKG_* change).
        let run = |cmd: xshell::Cmd<'_>| crate::without_package_env(cmd).run();
        step("cargo fmt --check");
        run(cmd!(sh, "{cargo} fmt --all -- --check"))?;
        step("cargo xtask lint (squawk on sql/)");
        let lint = crate::lint::lint_migrations()?;
        print!("{}", lint.render(false));
        anyhow::ensure!(lint.errors() == 0, "lint: unaccepted findings in sql/");
        step("cargo xtask schema --check (sql/schema.txt is what sql/ produces)");
        run(cmd!(sh, "{cargo} xtask schema --check"))?;
        step("cargo clippy -D warnings");
        run(cmd!(
            sh,
            "{cargo} clippy --workspace --all-targets -- -D warnings"
        ))?;
        step("cargo test --workspace");
        run(cmd!(sh, "{cargo} test --workspace"))?;
        if !self.no_test_local {
            // Docker in CI (auto never falls back there), else whatever answers.
            step("test-local --postgres auto (profile local)");
            run(cmd!(sh, "{cargo} xtask test-local --postgres auto"))?;
            step("test-local --runtime rie (AWS's Runtime Interface Emulator, same snapshots)");
            run(cmd!(
                sh,
                "{cargo} xtask test-local --runtime rie --postgres local --no-build"
            ))?;
            // The shipped profile (fat LTO, one codegen unit) is this run's: the Lambda build itself.
            step(
                "test-local --arch arm64 (the Lambda arm64 bootstrap as shipped, under qemu-user)",
            );
            run(cmd!(
                sh,
                "{cargo} xtask test-local --arch arm64 --postgres local"
            ))?;
        }
        step("all checks passed");
        Ok(())
    }
}
