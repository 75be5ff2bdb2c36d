//! `cargo xtask test-local`: the release bootstrap against real Postgres, run exactly as Lambda
//! would (Runtime API emulator) with a built-in Secrets Manager; the scenario's reports are
//! checked against snapshots in `tests/snapshots/`. The `tests` crate runs the same scenario.
//! This file is the command; the bootstrap (`target`), the steps (`scenario`), the snapshot
//! comparison (`snapshot`) and the one-line summaries (`summary`) are beside it.

mod log_lines;
mod scenario;
mod snapshot;
mod summary;
mod target;

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use xshell::{Shell, cmd};

use crate::build::Arch;
use crate::local::function::Runtime;
use crate::local::logging::LogArgs;
use crate::local::postgres::{DEFAULT_IMAGE, PgChoice, PgServer};
pub use scenario::{
    DATABASE, FUNCTION_NAME, SECRET_ID, Scenario, Step, WRONG_SECRET_ID, function_env,
    run_scenario, run_scenario_under, scenario_database,
};
pub use snapshot::{
    SnapshotMode, SnapshotResult, check_snapshot, redact, snapshot_dir, snapshot_path,
};
pub use summary::summarize;
pub use target::{
    Profile, Target, build_bootstrap, build_local_bootstrap, build_release_bootstrap,
};

/// Run the release bootstrap against real Postgres with emulated Lambda and Secrets Manager,
/// and check its reports against the snapshots
#[derive(clap::Args)]
pub struct TestLocal {
    /// Postgres to run against: auto, docker, local, or a postgres:// URL (append
    /// `?sslmode=verify-full&sslrootcert=PATH` for a server with its own CA)
    #[arg(long, default_value = "auto")]
    postgres: String,
    /// Image for `--postgres docker` (and auto when Docker answers)
    #[arg(long, default_value = DEFAULT_IMAGE)]
    image: String,
    /// `host`: the native release build; `arm64`: the Lambda arm64 bootstrap under qemu-user
    #[arg(long, value_enum, default_value = "host")]
    arch: TargetArch,
    /// `emulator`: the project's Runtime API emulator; `rie`: AWS's Runtime Interface Emulator
    /// (`aws-lambda-rie`, fetched from the aws-sam-cli wheel into .venv/rie on first use)
    #[arg(long, value_enum, default_value = "emulator")]
    runtime: Runtime,
    /// Print each report as raw JSON as well as the summary
    #[arg(long)]
    json: bool,
    /// Accept the current reports: (re)write the snapshots (never under CI)
    #[arg(long)]
    update_snapshots: bool,
    /// Use the existing bootstrap instead of building it
    #[arg(long)]
    no_build: bool,
    /// Run the exact shipped build (`[profile.release]`: fat LTO, one codegen unit) instead of the
    /// quick-to-rebuild `[profile.local]` (same code and features). `--arch arm64` is always release.
    #[arg(long)]
    release: bool,
    #[command(flatten)]
    log: LogArgs,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum TargetArch {
    Host,
    Arm64,
}

fn progress(elapsed: Duration, line: &str) {
    println!("[{:>6.2}s] {line}", elapsed.as_secs_f64());
}

impl TestLocal {
    pub fn run(self, sh: &Shell) -> anyhow::Result<()> {
        let started = Instant::now();
        let choice: PgChoice = self.postgres.parse()?;
        let choice = choice.with_image(&self.image);
        crate::local::postgres::hand_over_if_docker(&choice)?;
        if self.update_snapshots && crate::is_ci() {
            bail!(
                "test-local: --update-snapshots is refused under CI (snapshots are reviewed, not written by CI)"
            );
        }

        let profile = if self.release || self.arch == TargetArch::Arm64 {
            Profile::Release
        } else {
            Profile::Local
        };
        // The server starts while the bootstrap builds (a warm build is a cargo freshness check, a
        // server start a second or so): on the runtime's threads, joined once the build is done.
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        let image = self.image.clone();
        let starting = runtime.spawn(async move {
            // `--image` also applies when auto picks Docker.
            let auto_image = matches!(choice, PgChoice::Auto) && image != DEFAULT_IMAGE;
            if auto_image && crate::local::postgres::docker_answers().await {
                PgServer::start(&PgChoice::Docker { image }).await
            } else {
                PgServer::start(&choice).await
            }
        });
        let built = self.bootstrap(sh, profile, started);
        let server = runtime.block_on(starting)?;
        let (mut target, server) = match (built, server) {
            (Ok(target), Ok(server)) => (target, server),
            (Err(e), server) => {
                // Nothing left running: the server that started meanwhile goes first.
                if let Ok(server) = server {
                    let _ = runtime.block_on(server.stop());
                }
                return Err(e);
            }
            (Ok(_), Err(e)) => return Err(e),
        };
        target.logging = Some(self.log.controls());
        let json_out = self.json;
        let runtime_choice = self.runtime;
        let scenario = runtime.block_on(async move {
            let version = server.server_version().await.unwrap_or_default();
            progress(
                started.elapsed(),
                &format!(
                    "postgres: {} on {}:{} (PostgreSQL {version}, TLS {})",
                    server.kind(),
                    server.host(),
                    server.port(),
                    server.sslmode()
                ),
            );
            progress(
                started.elapsed(),
                &format!("runtime: {}", runtime_choice.name()),
            );
            let scenario = run_scenario_under(runtime_choice, &server, &target, |step| {
                let inv = &step.invocation;
                let timing = format!(
                    "{}{:.0} ms{}",
                    if inv.cold { "cold, " } else { "" },
                    inv.total.as_secs_f64() * 1000.0,
                    inv.max_rss_kb.map_or(String::new(), |kb| format!(
                        ", rss {:.1} MiB",
                        kb as f64 / 1024.0
                    )),
                );
                progress(
                    started.elapsed(),
                    &format!("{:<13} {}  [{timing}]", step.name, summarize(&step.payload)),
                );
                if json_out {
                    println!(
                        "{}",
                        serde_json::to_string_pretty(&step.payload).unwrap_or_default()
                    );
                }
                if let Some(problem) = &step.problem {
                    println!(
                        "    FAILED: {problem}\n    log:\n{}",
                        indent(&step.invocation.log)
                    );
                }
            })
            .await;
            server.stop().await?;
            scenario
        })?;

        let mode = if self.update_snapshots {
            SnapshotMode::Update
        } else {
            SnapshotMode::Check
        };
        // (step, line): a step may fail its own checks, its report's snapshot and its log's snapshot.
        let mut failures: Vec<(&str, String)> = scenario
            .steps
            .iter()
            .filter_map(|s| {
                s.problem
                    .as_ref()
                    .map(|p| (s.name, format!("{}: {p}", s.name)))
            })
            .collect();
        let mut written = 0;
        let logs = scenario.steps.iter().filter_map(|step| {
            let lines = step.log_lines.clone()?;
            log_lines::SNAPSHOT_STEPS
                .contains(&step.name)
                .then(|| (step.name, format!("log_{}", step.name), lines))
        });
        let reports = scenario.steps.iter().map(|step| {
            (
                step.name,
                step.name.to_string(),
                redact(&step.payload, &scenario.database, scenario.port),
            )
        });
        for (step, name, value) in reports.collect::<Vec<_>>().into_iter().chain(logs) {
            match check_snapshot(&name, &value, mode)? {
                SnapshotResult::Matched => {}
                SnapshotResult::Written => written += 1,
                SnapshotResult::Missing => failures.push((
                    step,
                    format!("{name}: no snapshot at {}", display(&snapshot_path(&name))),
                )),
                SnapshotResult::Mismatch { diff } => {
                    println!(
                        "\nsnapshot mismatch for step {name} ({}):\n{diff}",
                        display(&snapshot_path(&name))
                    );
                    failures.push((step, format!("{name}: report differs from its snapshot")));
                }
            }
        }
        if written > 0 {
            progress(
                started.elapsed(),
                &format!("snapshots: wrote {written} in {}", display(&snapshot_dir())),
            );
        }
        if !failures.is_empty() {
            println!();
            for (_, f) in &failures {
                println!("FAILED {f}");
            }
            if failures.iter().any(|(_, f)| f.contains("snapshot")) {
                if crate::is_ci() {
                    println!(
                        "accept changed reports locally with `cargo xtask test-local --update-snapshots` and commit tests/snapshots/"
                    );
                } else {
                    println!(
                        "accept with `cargo xtask test-local --update-snapshots` or `cargo insta review` (the .snap.new files are written)"
                    );
                }
            }
            bail!(
                "test-local: {} of {} steps failed",
                failed_steps(failures.iter().map(|(step, _)| *step)),
                scenario.steps.len()
            );
        }
        progress(
            started.elapsed(),
            &format!(
                "ok: {} steps {} ({} provider, {} runtime)",
                scenario.steps.len(),
                if written > 0 {
                    format!("passed, {written} snapshots written")
                } else {
                    "matched their snapshots".to_string()
                },
                scenario.provider,
                self.runtime.name()
            ),
        );
        Ok(())
    }
}

impl TestLocal {
    /// The bootstrap to run: built now (progress lines included), or the existing one with `--no-build`.
    fn bootstrap(&self, sh: &Shell, profile: Profile, started: Instant) -> anyhow::Result<Target> {
        let target = if self.no_build {
            match self.arch {
                TargetArch::Host => Target::host(profile.bootstrap_path()),
                TargetArch::Arm64 => {
                    Target::arm64(crate::build::lambda_dir(Arch::Arm64).join("bootstrap"))
                }
            }
        } else {
            progress(
                started.elapsed(),
                match (self.arch, profile) {
                    (TargetArch::Arm64, _) => {
                        "build: Lambda arm64 bootstrap (release profile, cargo-zigbuild)"
                    }
                    (TargetArch::Host, Profile::Local) => {
                        "build: host bootstrap, profile local (release code, no LTO; --release for the shipped profile)"
                    }
                    (TargetArch::Host, Profile::Release) => {
                        "build: host bootstrap, profile release (as shipped)"
                    }
                },
            );
            match self.arch {
                TargetArch::Host => Target::host(build_bootstrap(profile)?),
                TargetArch::Arm64 => Target::arm64(crate::build::bootstrap(sh, Arch::Arm64)?),
            }
        };
        if self.arch == TargetArch::Arm64 {
            cmd!(sh, "qemu-aarch64-static --version")
                .quiet()
                .ignore_stdout()
                .run()
                .context("test-local --arch arm64 needs qemu-aarch64-static (Debian: qemu-user-static, libc6-arm64-cross)")?;
        }
        progress(
            started.elapsed(),
            &format!("bootstrap: {}", display(&target.bootstrap)),
        );
        Ok(target)
    }
}

/// How many different steps appear among `failures` (the step of each failure line).
fn failed_steps<'a>(failures: impl IntoIterator<Item = &'a str>) -> usize {
    failures
        .into_iter()
        .collect::<std::collections::BTreeSet<_>>()
        .len()
}

fn display(path: &Path) -> String {
    path.strip_prefix(crate::project_root())
        .unwrap_or(path)
        .display()
        .to_string()
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("      {l}\n")).collect()
}

#[cfg(test)]
mod tests {
    use super::failed_steps;

    #[test]
    fn a_step_failing_its_checks_and_both_snapshots_counts_once() {
        // What an interrupted run leaves: every step's invocation, report and log fail together.
        let steps = [
            "status",
            "plan",
            "apply",
            "reapply",
            "verify",
            "status_after",
        ];
        let failures = steps.iter().flat_map(|s| [*s, *s, *s]);
        assert_eq!(failed_steps(failures), 6);
        assert_eq!(failed_steps(["apply", "verify", "apply"]), 2);
        assert_eq!(failed_steps([]), 0);
    }
}
