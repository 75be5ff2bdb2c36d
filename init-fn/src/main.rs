//! Lambda glue only: logging, state built once, then the runtime loop.

use init_fn::{Config, State, handle, migrate, secret};
use lambda_runtime::{LambdaEvent, service_fn};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,aws_config=warn,aws_smithy_runtime=warn".into()),
        )
        .with_ansi(false)
        .without_time()
        .with_target(false)
        .init();
    let state = State::new(
        Config::from_env(),
        secret::client_from_env().await,
        migrate::embedded(),
    );
    let state = &state;
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<serde_json::Value>| async move {
            handle(state, event.payload, &event.context.request_id).await
        },
    ))
    .await
}
