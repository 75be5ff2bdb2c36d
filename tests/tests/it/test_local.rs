//! `cargo xtask test-local`'s scenario (fresh apply → rerun → status → verify → plan → wrong
//! password) with the real bootstrap (profile local: the shipped code and features), through the Runtime API and Secrets Manager
//! emulators, on both Postgres providers; reports checked against `tests/snapshots/`.

use serde_json::json;
use xtask::local::postgres::{PgChoice, PgServer};
use xtask::test_local::{
    self, SnapshotMode, SnapshotResult, Target, check_snapshot, redact, run_scenario,
};

fn bootstrap() -> anyhow::Result<Target> {
    Ok(Target::host(test_local::build_local_bootstrap()?))
}

async fn scenario_matches_snapshots(choice: PgChoice) -> anyhow::Result<()> {
    let target = bootstrap()?;
    let server = PgServer::start(&choice).await?;
    let scenario = run_scenario(&server, &target, |_| {}).await?;
    server.stop().await?;

    let problems = scenario.problems();
    assert!(problems.is_empty(), "{problems:#?}");
    let names: Vec<&str> = scenario.steps.iter().map(|s| s.name).collect();
    assert_eq!(
        names,
        [
            "apply_fresh",
            "apply_rerun",
            "status",
            "verify",
            "plan",
            "bad_password"
        ]
    );
    // One warm process for the five actions, a cold one for the wrong password.
    let cold: Vec<bool> = scenario.steps.iter().map(|s| s.invocation.cold).collect();
    assert_eq!(cold, [true, false, false, false, false, true]);

    let mut mismatches = Vec::new();
    for step in &scenario.steps {
        let value = redact(&step.payload, &scenario.database, scenario.port);
        match check_snapshot(step.name, &value, SnapshotMode::Check)? {
            SnapshotResult::Matched => {}
            SnapshotResult::Mismatch { diff } => mismatches.push(format!("{}:\n{diff}", step.name)),
            SnapshotResult::Missing => mismatches.push(format!("{}: no snapshot", step.name)),
            SnapshotResult::Written => unreachable!("check mode never writes .snap"),
        }
    }
    assert!(
        mismatches.is_empty(),
        "reports differ from tests/snapshots (accept with `cargo xtask test-local --update-snapshots`):\n{}",
        mismatches.join("\n")
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_on_docker_postgres() -> anyhow::Result<()> {
    scenario_matches_snapshots(PgChoice::Docker {
        image: "postgres:17".into(),
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_on_local_postgres() -> anyhow::Result<()> {
    scenario_matches_snapshots(PgChoice::Local).await
}

/// A changed report (here: an extra index) fails with a readable diff naming the change.
#[test]
fn changed_report_fails_with_a_diff() -> anyhow::Result<()> {
    let snap = std::fs::read_to_string(test_local::snapshot_path("apply_fresh"))?;
    let body = snap.splitn(3, "---\n").nth(2).expect("insta header");
    let mut report: serde_json::Value = serde_json::from_str(body)?;
    report["indexes"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "idx_documents_extra", "table": "documents", "present": true}));
    match check_snapshot("apply_fresh", &report, SnapshotMode::Compare)? {
        SnapshotResult::Mismatch { diff } => {
            assert!(
                diff.contains("+      \"name\": \"idx_documents_extra\","),
                "{diff}"
            );
            assert!(diff.contains("@@"), "{diff}");
        }
        _ => panic!("an added index must not match the snapshot"),
    }
    Ok(())
}

/// The real bootstrap asking the Secrets Manager emulator for an id it does not hold: the SDK gets
/// `ResourceNotFoundException` over the wire and the function fails with `SecretFetch`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_secret_fails_with_secret_fetch() -> anyhow::Result<()> {
    use xtask::local::runtime_api::{FunctionSpec, LocalFunction, Outcome};
    use xtask::local::secrets_manager::SecretsManager;

    let target = bootstrap()?;
    let secrets = SecretsManager::start().await?;
    secrets.put(test_local::SECRET_ID, "irrelevant");
    let mut spec = FunctionSpec::new(&target.bootstrap, test_local::FUNCTION_NAME);
    spec.env = vec![
        ("DB_HOST".into(), "localhost".into()),
        ("DB_PORT".into(), "1".into()),
        ("DB_SECRET_ID".into(), "ca-a2a/no-such-secret".into()),
        (
            "AWS_ENDPOINT_URL_SECRETS_MANAGER".into(),
            secrets.endpoint(),
        ),
    ];
    let mut function = LocalFunction::start(spec).await?;
    let inv = function.invoke(json!({})).await?;
    let Outcome::FunctionError {
        error_type,
        error_message,
    } = &inv.outcome
    else {
        panic!(
            "expected a function error, got {:?}\n{}",
            inv.outcome, inv.log
        );
    };
    assert_eq!(error_type, "SecretFetch", "{error_message}\n{}", inv.log);
    assert!(
        error_message.contains("ca-a2a/no-such-secret"),
        "the message names the secret: {error_message}"
    );
    assert!(
        secrets.request_count() >= 1,
        "the SDK must reach the emulator"
    );
    assert!(!inv.log.contains("irrelevant"));
    Ok(())
}
