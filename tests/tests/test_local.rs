//! `cargo xtask test-local`'s scenario (fresh apply → rerun → status → verify → plan → wrong
//! password) with the real release bootstrap, through the Runtime API and Secrets Manager
//! emulators, on both Postgres providers; reports checked against `tests/snapshots/`.

use serde_json::json;
use xtask::local::postgres::{PgChoice, PgServer};
use xtask::test_local::{
    self, SnapshotMode, SnapshotResult, Target, check_snapshot, redact, run_scenario,
};

fn bootstrap() -> anyhow::Result<Target> {
    Ok(Target::host(test_local::build_release_bootstrap()?))
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
