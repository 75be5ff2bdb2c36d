//! End to end through `cargo xtask serve`'s pieces: SDK → local Invoke API → Runtime API emulator →
//! the bootstrap (profile local) → Postgres (TLS verify-full) with the Secrets Manager emulator.

use xtask::local::postgres::PgChoice;
use xtask::serve::{FUNCTION_NAME, LocalStack};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invoke_runs_the_real_bootstrap() -> anyhow::Result<()> {
    let bootstrap = tokio::task::spawn_blocking(xtask::test_local::build_local_bootstrap).await??;
    let stack = LocalStack::start(&PgChoice::Auto, bootstrap, None).await?;
    let api = stack.serve(([127, 0, 0, 1], 0).into()).await?;
    let config = xtask_aws::aws::local_sdk_config(&api.endpoint(), "eu-west-3").await;
    let lambda = &xtask_aws::aws::Clients::new(&config);
    let out = &mut std::io::stdout();

    let apply =
        xtask_aws::invoke::invoke(lambda, FUNCTION_NAME, br#"{"action":"apply"}"#, out).await?;
    let tail = apply.log_tail.clone().unwrap_or_default();
    println!("{tail}");
    let apply = apply.into_result()?;
    let report = apply.payload_json().unwrap();
    assert_eq!(report["status"], "ok", "{report}");
    assert_eq!(report["action"], "apply");
    assert_eq!(report["migrations"][0]["state"], "applied", "{report}");
    assert!(tail.contains("START RequestId:"), "{tail}");
    assert!(tail.contains("REPORT RequestId:"), "{tail}");
    println!("{}", xtask_aws::invoke::summary(&report));

    // Warm second call: the same process, the migration is already applied.
    let status = xtask_aws::invoke::invoke(lambda, FUNCTION_NAME, br#"{"action":"status"}"#, out)
        .await?
        .into_result()?;
    assert_eq!(status.payload_json().unwrap()["action"], "status");

    // A FunctionError: Lambda's header, the named errorType, and a non-zero `cargo xtask invoke`.
    let bad = xtask_aws::invoke::invoke(
        lambda,
        FUNCTION_NAME,
        br#"{"action":"drop-everything"}"#,
        out,
    )
    .await?;
    assert_eq!(bad.function_error.as_deref(), Some("Unhandled"));
    assert_eq!(bad.payload_json().unwrap()["errorType"], "InvalidEvent");
    assert!(bad.log_tail.is_some());
    let err = format!("{:#}", bad.into_result().unwrap_err());
    assert!(err.contains("InvalidEvent"), "{err}");

    drop(api);
    stack.stop().await
}
