//! Events from the other callers, through the real bootstrap under both local runtimes: a CDK
//! `triggers.Trigger` (an empty payload: apply) and Terraform's `aws_lambda_invocation` with
//! `lifecycle_scope = "CRUD"` (`tf.action` create/update apply, delete runs nothing). The payloads are
//! snapshots; both runtimes must give the same ones.

use std::time::Duration;

use serde_json::{Value, json};
use xtask::local::{
    function::{Function, Runtime},
    postgres::{PgChoice, PgServer},
    runtime_api::FunctionSpec,
    secrets_manager::SecretsManager,
};
use xtask::test_local::{self, Profile, redact};

const SECRET_ID: &str = "ca-a2a/db-password";

fn snapshot(name: &str, payload: &Value) {
    insta::with_settings!({ snapshot_path => "../../snapshots", prepend_module_to_snapshot => false }, {
        insta::assert_json_snapshot!(name, payload);
    });
}

async fn callers(runtime: Runtime) -> anyhow::Result<()> {
    let bootstrap = test_local::build_bootstrap(Profile::Local)?;
    let server = PgServer::start(&PgChoice::Local).await?;
    let secrets = SecretsManager::start().await?;
    secrets.put(SECRET_ID, server.password());
    let function = |database: &str| {
        let mut spec = FunctionSpec::new(&bootstrap, test_local::FUNCTION_NAME);
        spec.timeout = Duration::from_secs(30);
        spec.env = test_local::function_env(&server, &secrets, database, SECRET_ID);
        Function::start(runtime, spec)
    };
    let invoke = async |function: &mut Function, database: &str, event: Value| {
        let invocation = function.invoke(event).await?;
        let (payload, _) = invocation.payload(function.spec().timeout);
        assert!(
            !invocation.log.contains(server.password()),
            "{}",
            invocation.log
        );
        anyhow::Ok(redact(&payload, database, server.port()))
    };

    // CDK: `new triggers.Trigger(...)` invokes with an empty payload, `{}`.
    server.create_database("ev_cdk").await?;
    let mut cdk = function("ev_cdk").await?;
    let payload = invoke(&mut cdk, "ev_cdk", json!({})).await?;
    snapshot("event_cdk_trigger", &payload);
    assert_eq!(payload["migrations"][0]["state"], "applied");
    cdk.shutdown().await;

    server.create_database("ev_tf").await?;
    let mut tf = function("ev_tf").await?;
    let create = json!({"tf": {"action": "create", "prev_input": null}});
    let payload = invoke(&mut tf, "ev_tf", create.clone()).await?;
    snapshot("event_terraform_create", &payload);
    assert_eq!(payload["migrations"][0]["state"], "applied");

    // An update carries the previous input; it is ignored, the other fields follow the usual rules.
    let update = json!({"action": "status", "tf": {"action": "update", "prev_input": create}});
    let payload = invoke(&mut tf, "ev_tf", update.clone()).await?;
    snapshot("event_terraform_update_status", &payload);
    assert_eq!(payload["migrations"][0]["state"], "already_applied");

    // A destroy runs nothing: the schema and the ledger stay as they are.
    let schema = server.dump_schema("ev_tf").await?;
    let reads = secrets.request_count();
    let delete = json!({"tf": {"action": "delete", "prev_input": update}});
    let payload = invoke(&mut tf, "ev_tf", delete).await?;
    snapshot("event_terraform_delete", &payload);
    assert_eq!(server.dump_schema("ev_tf").await?, schema);
    assert_eq!(secrets.request_count(), reads);

    let payload = invoke(&mut tf, "ev_tf", json!({"tf": {"action": "destroy"}})).await?;
    snapshot("event_terraform_unknown_action", &payload);
    assert_eq!(payload["errorType"], "InvalidEvent");
    tf.shutdown().await;
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cdk_and_terraform_events_under_the_emulator() -> anyhow::Result<()> {
    callers(Runtime::Emulator).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cdk_and_terraform_events_under_rie() -> anyhow::Result<()> {
    callers(Runtime::Rie).await
}
