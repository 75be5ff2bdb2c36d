//! Lambda glue only: logging, state built once, then the runtime loop.

use std::time::{Instant, SystemTime};

use init_fn::{
    Config, InitError, Request, Response, State, Work,
    engine::run,
    handle_parsed,
    invocation::event,
    invocation::log,
    invocation::metrics::{Invocation, Metrics},
    session::secret,
};
use lambda_runtime::{LambdaEvent, service_fn};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    log::init(&log::Settings::from_env());
    let metrics = Metrics::from_env();
    let state = State::new(Config::from_env(), secret::client_from_env, run::embedded());
    let (state, metrics) = (&state, &metrics);
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<serde_json::Value>| async move {
            invoke(state, metrics, event).await
        },
    ))
    .await
}

/// One invocation, then its failure line and its metrics document.
async fn invoke(
    state: &State,
    metrics: &Metrics,
    event: LambdaEvent<serde_json::Value>,
) -> Result<Response, InitError> {
    let started = Instant::now();
    let LambdaEvent { payload, context } = event;
    let event = event::parse(payload);
    let action = match &event.request {
        Ok(Request {
            work: Work::Run(action),
            ..
        }) => Some(*action),
        _ => None,
    };
    let result = handle_parsed(state, event, &context.request_id, Some(context.deadline())).await;
    if let Err(err) = &result {
        log::failure(err);
    }
    metrics.write(&Invocation {
        function_name: &context.env_config.function_name,
        request_id: &context.request_id,
        action,
        result: result.as_ref().map(Response::report),
        duration: started.elapsed(),
        at: SystemTime::now(),
    });
    result
}
