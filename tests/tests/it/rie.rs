//! AWS's Runtime Interface Emulator (`aws-lambda-rie`) as the runtime: the test-local scenario
//! yields the very snapshots the project's emulator yields, and both runtimes report an overrun,
//! a crash and an init error the same way. A missing RIE that cannot be fetched is a failure.

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use serde_json::json;
use xtask::local::function::{Function, Runtime};
use xtask::local::postgres::{PgChoice, PgServer};
use xtask::local::runtime_api::{FunctionSpec, Outcome};
use xtask::test_local::{
    self, SnapshotMode, SnapshotResult, Target, check_snapshot, redact, run_scenario_under,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_under_rie_matches_the_snapshots() -> anyhow::Result<()> {
    let target = Target::host(test_local::build_local_bootstrap()?);
    let server = PgServer::start(&PgChoice::Local).await?;
    let scenario = run_scenario_under(Runtime::Rie, &server, &target, |_| {}).await;
    server.stop().await?;
    let scenario = scenario?;

    let problems = scenario.problems();
    assert!(problems.is_empty(), "{problems:#?}");
    // RIE's own word for a new process (`INIT START`): one warm process, then a cold one.
    let cold: Vec<bool> = scenario.steps.iter().map(|s| s.invocation.cold).collect();
    assert_eq!(cold, [true, false, false, false, false, true]);
    let mut mismatches = Vec::new();
    for step in &scenario.steps {
        assert!(
            step.invocation.log.contains("REPORT RequestId: "),
            "{}",
            step.invocation.log
        );
        let value = redact(&step.payload, &scenario.database, scenario.port);
        match check_snapshot(step.name, &value, SnapshotMode::Compare)? {
            SnapshotResult::Matched => {}
            SnapshotResult::Mismatch { diff } => mismatches.push(format!("{}:\n{diff}", step.name)),
            SnapshotResult::Missing => mismatches.push(format!("{}: no snapshot", step.name)),
            SnapshotResult::Written => unreachable!("compare mode never writes"),
        }
    }
    assert!(
        mismatches.is_empty(),
        "under RIE the reports differ from tests/snapshots:\n{}",
        mismatches.join("\n")
    );
    Ok(())
}

/// A handler that overruns a 2 s function timeout. A purpose-made bootstrap, not init-fn: init-fn
/// answers `Timeout` itself before its deadline, and this is about what the runtime does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overrun_is_sandbox_timedout_under_both_runtimes() -> anyhow::Result<()> {
    let dir = tempdir("overrun")?;
    let slow = script(
        &dir,
        "slow",
        r#"while true; do curl -sS "$API/invocation/next" >/dev/null; echo "handling, slowly"; sleep 30; done"#,
    )?;
    let mut spec = FunctionSpec::new(&slow, "rie-test");
    spec.timeout = Duration::from_secs(2);

    for runtime in [Runtime::Emulator, Runtime::Rie] {
        let mut function = Function::start(runtime, spec.clone()).await?;
        let started = Instant::now();
        let inv = function.invoke(json!({})).await?;
        let took = started.elapsed();
        assert_eq!(inv.outcome, Outcome::Timeout, "{runtime:?}\n{}", inv.log);
        assert!(
            took >= Duration::from_secs(2) && took < Duration::from_secs(5),
            "{runtime:?}: answered after {took:?}"
        );
        assert!(
            inv.log.contains("handling, slowly"),
            "{runtime:?}\n{}",
            inv.log
        );
        let (payload, function_error) = inv.payload(spec.timeout);
        assert_eq!(payload["errorType"], "Sandbox.Timedout");
        let message = payload["errorMessage"].as_str().unwrap_or_default();
        assert!(
            message.ends_with("Task timed out after 2.00 seconds"),
            "{runtime:?}: {message}"
        );
        assert_eq!(function_error, Some("Unhandled"));
        // The overrunning process is gone; the next invocation starts a new one.
        assert_eq!(
            function.pid(),
            None,
            "{runtime:?}: the process must be killed"
        );
        let again = function.invoke(json!({})).await?;
        assert!(again.cold, "{runtime:?}: {}", again.log);
        function.shutdown().await;
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// A bootstrap that crashes while handling, and one that reports an init error: both runtimes
/// give the same outcome (RIE's wording is the reference).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_and_init_error_read_the_same_under_both_runtimes() -> anyhow::Result<()> {
    let dir = tempdir("crash")?;
    let crash = script(
        &dir,
        "crash",
        r#"curl -sS "$API/invocation/next" >/dev/null; echo dying >&2; exit 3"#,
    )?;
    let init_error = script(
        &dir,
        "init-error",
        r#"curl -sS -X POST "$API/init/error" -d '{"errorType":"Config","errorMessage":"DB_HOST is not set"}' >/dev/null; exit 1"#,
    )?;
    for runtime in [Runtime::Emulator, Runtime::Rie] {
        let mut function = Function::start(runtime, FunctionSpec::new(&crash, "rie-test")).await?;
        let inv = function.invoke(json!({})).await?;
        assert_eq!(
            inv.outcome,
            Outcome::Crash {
                status: "exit status 3".into()
            },
            "{runtime:?}\n{}",
            inv.log
        );
        assert!(inv.log.contains("dying"), "{runtime:?}\n{}", inv.log);
        let (payload, _) = inv.payload(Duration::from_secs(60));
        assert_eq!(payload["errorType"], "Runtime.ExitError");
        assert!(
            payload["errorMessage"]
                .as_str()
                .unwrap_or_default()
                .ends_with("Error: Runtime exited with error: exit status 3"),
            "{runtime:?}: {payload}"
        );
        function.shutdown().await;

        let mut function =
            Function::start(runtime, FunctionSpec::new(&init_error, "rie-test")).await?;
        let inv = function.invoke(json!({})).await?;
        assert_eq!(
            inv.outcome,
            Outcome::InitError {
                error_type: "Config".into(),
                error_message: "DB_HOST is not set".into()
            },
            "{runtime:?}\n{}",
            inv.log
        );
        function.shutdown().await;
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

fn tempdir(name: &str) -> anyhow::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("init-fn-rie-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

fn script(dir: &std::path::Path, name: &str, body: &str) -> anyhow::Result<std::path::PathBuf> {
    let path = dir.join(name);
    std::fs::write(
        &path,
        format!("#!/bin/bash\nAPI=\"http://$AWS_LAMBDA_RUNTIME_API/2018-06-01/runtime\"\n{body}\n"),
    )?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
    Ok(path)
}
