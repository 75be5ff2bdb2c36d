//! `cargo xtask invoke` against the local Invoke API: the SDK's wire format, the decoded log tail,
//! and a FunctionError turned into a failure with errorType and message.

use serde_json::json;
use xtask::invoke_api::{Backend, InvokeApi, Outcome};

/// A stand-in function: answers the action, fails with a named error on `{"action": "boom"}`.
struct Echo;

impl Backend for Echo {
    async fn invoke(&self, event: Vec<u8>) -> anyhow::Result<Outcome> {
        let ev: serde_json::Value = serde_json::from_slice(&event)?;
        let action = ev["action"].as_str().unwrap_or("apply").to_string();
        let log = format!("{}START\ninvoked with {action}\nEND\n", "x".repeat(5000));
        Ok(if action == "boom" {
            Outcome {
                payload: serde_json::to_vec(
                    &json!({"errorType": "Auth", "errorMessage": "password authentication failed"}),
                )?,
                error: true,
                log,
            }
        } else {
            Outcome {
                payload: serde_json::to_vec(
                    &json!({"status": "ok", "action": action, "database": "documents_db",
                    "migrations": [{"version": 1, "name": "initial_schema", "state": "applied"}]}),
                )?,
                error: false,
                log,
            }
        })
    }
}

#[tokio::test]
async fn invoke_api_speaks_lambda_to_the_sdk() -> anyhow::Result<()> {
    let api = InvokeApi::start(([127, 0, 0, 1], 0).into(), "ca-a2a-db-init", Echo).await?;
    let config = xtask_aws::aws::local_sdk_config(&api.endpoint(), "eu-west-3").await;
    let c = xtask_aws::aws::Clients::new(&config);
    let lambda = &c;
    let mut out = Vec::new();

    let ok = xtask_aws::invoke::invoke(
        lambda,
        "ca-a2a-db-init",
        br#"{"action":"status"}"#,
        &mut out,
    )
    .await?;
    assert_eq!(ok.status_code, 200);
    assert_eq!(ok.function_error, None);
    assert_eq!(ok.payload_json().unwrap()["action"], "status");
    let tail = ok.log_tail.clone().unwrap();
    assert!(tail.ends_with("invoked with status\nEND\n"), "{tail}");
    assert!(tail.len() <= 4096);
    let summary = xtask_aws::invoke::summary(&ok.payload_json().unwrap());
    assert!(
        summary.contains("migration 0001 initial_schema"),
        "{summary}"
    );
    ok.into_result()?;

    let failed =
        xtask_aws::invoke::invoke(lambda, "ca-a2a-db-init", br#"{"action":"boom"}"#, &mut out)
            .await?;
    assert_eq!(failed.function_error.as_deref(), Some("Unhandled"));
    let err = format!("{:#}", failed.into_result().unwrap_err());
    assert!(
        err.contains("Auth: password authentication failed"),
        "{err}"
    );

    // The full ARN names the same function; another name is ResourceNotFound, as in AWS.
    let arn = "arn:aws:lambda:eu-west-3:000000000000:function:ca-a2a-db-init";
    xtask_aws::invoke::invoke(lambda, arn, b"{}", &mut out)
        .await?
        .into_result()?;
    let missing = xtask_aws::invoke::invoke(lambda, "other", b"{}", &mut out)
        .await
        .unwrap_err();
    assert!(
        format!("{missing:#}").contains("ResourceNotFoundException"),
        "{missing:#}"
    );
    Ok(())
}
