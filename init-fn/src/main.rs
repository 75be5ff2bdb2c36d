//! Lambda glue only: logging, state built once, then the runtime loop.

use init_fn::{Config, State, handle, migrate, secret};
use lambda_runtime::{LambdaEvent, service_fn};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    // init-fn's own progress at info; the SDK and driver only when they warn.
    let filter = tracing_subscriber::filter::Targets::new()
        .with_default(tracing::Level::WARN)
        .with_target("init_fn", tracing::Level::INFO);
    tracing_subscriber::fmt()
        .with_ansi(false)
        .without_time()
        .with_target(false)
        .finish()
        .with(filter)
        .init();
    let state = State::new(
        Config::from_env(),
        secret::client_from_env(),
        migrate::embedded(),
    );
    let state = &state;
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<serde_json::Value>| async move {
            let deadline = event.context.deadline();
            handle(
                state,
                event.payload,
                &event.context.request_id,
                Some(deadline),
            )
            .await
        },
    ))
    .await
}
