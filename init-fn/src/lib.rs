//! `init-fn`: brings the `documents_db` schema up to date from inside the VPC. `handle` is the whole
//! invocation: event → secret → TLS session → migration engine → report.

pub mod apply;
pub mod config;
pub mod db;
pub mod deadline;
pub mod error;
pub mod log;
pub mod metrics;
pub mod migrate;
pub mod pending;
pub mod plan;
pub mod report;
pub mod rows;
pub mod secret;
pub mod sql;

use std::{sync::OnceLock, time::SystemTime};

use postgres_native_tls::MakeTlsConnector;
use serde::Deserialize;

pub use crate::{
    config::Config, deadline::Deadline, error::InitError, report::Action, report::Report,
};

/// What every invocation shares, built once at cold start.
pub struct State {
    /// A bad environment is reported on every invocation as `Config`, not as a crash loop.
    ready: Result<Ready, InitError>,
    secrets: aws_sdk_secretsmanager::Client,
    migrations: Vec<migrate::Migration>,
}

struct Ready {
    config: Config,
    tls: MakeTlsConnector,
}

impl State {
    /// `config` is validated and the TLS connector (CA bundle parsed) built here, once.
    pub fn new(
        config: Result<Config, InitError>,
        secrets: aws_sdk_secretsmanager::Client,
        migrations: Vec<migrate::Migration>,
    ) -> State {
        let ready = config.and_then(|config| {
            let ca = match &config.ca_bundle {
                Some(path) => Some(std::fs::read(path).map_err(|e| {
                    InitError::Config(format!("DB_CA_BUNDLE={}: {e}", path.display()))
                })?),
                None => None,
            };
            let tls = db::tls_connector(config.sslmode, ca.as_deref())?;
            Ok(Ready { config, tls })
        });
        State {
            ready,
            secrets,
            migrations,
        }
    }
}

/// The event: `{}` / `null` → apply; `{"action": "..."}`; `"exact_counts": true` with verify only.
#[derive(Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Request {
    #[serde(default)]
    pub action: Option<Action>,
    #[serde(default)]
    pub exact_counts: bool,
}

/// Parses the event; anything but the documented shapes is `InvalidEvent`.
pub fn parse_request(event: serde_json::Value) -> Result<Request, InitError> {
    if event.is_null() {
        return Ok(Request::default());
    }
    let request: Request = serde_json::from_value(event).map_err(|e| {
        InitError::InvalidEvent(error::one_line(&format!(
            "{e}; expected {{}} or {{\"action\": \"apply\"|\"plan\"|\"status\"|\"verify\"}}"
        )))
    })?;
    if request.exact_counts && request.action != Some(Action::Verify) {
        return Err(InitError::InvalidEvent(
            "\"exact_counts\" is only accepted with {\"action\": \"verify\"}".to_string(),
        ));
    }
    Ok(request)
}

/// The action of an event (see [`parse_request`]).
pub fn parse_event(event: serde_json::Value) -> Result<Action, InitError> {
    Ok(parse_request(event)?.action.unwrap_or(Action::Apply))
}

/// One invocation; `deadline` is the Lambda context's (`None`: no limit).
pub async fn handle(
    state: &State,
    event: serde_json::Value,
    request_id: &str,
    deadline: Option<SystemTime>,
) -> Result<Report, InitError> {
    let request = parse_request(event)?;
    let action = request.action.unwrap_or(Action::Apply);
    let ready = state.ready.as_ref().map_err(InitError::clone)?;
    let deadline = Deadline::new(deadline, ready.config.deadline_margin);
    let cancel = OnceLock::new();
    let run = invocation(state, ready, &request, request_id, deadline, &cancel);
    let Some(hard) = deadline.hard() else {
        return run.await;
    };
    match tokio::time::timeout_at(hard, run).await {
        Ok(result) => result,
        // The last resort when a step outside the migrations (secret, connect, inventory) hangs:
        // answer Lambda before it kills us, and stop the server's statement (its locks) too.
        Err(_) => {
            if let Some(cancel) = cancel.get() {
                db::Canceller::cancel(cancel, deadline.margin() / 4).await;
            }
            Err(InitError::Timeout(format!(
                "the {} run did not finish before the invocation's deadline (DB_DEADLINE_MARGIN_S={} s); stopped, the server rolls back what was running; retry with a longer function timeout",
                format!("{action:?}").to_lowercase(),
                deadline.margin().as_secs()
            )))
        }
    }
}

/// The invocation after the event is parsed: secret → TLS session → migration engine → report.
async fn invocation(
    state: &State,
    ready: &Ready,
    request: &Request,
    request_id: &str,
    deadline: Deadline,
    cancel: &OnceLock<db::Canceller>,
) -> Result<Report, InitError> {
    let config = &ready.config;
    let action = request.action.unwrap_or(Action::Apply);
    tracing::info!(?action, secret_id = %config.secret_id, "fetching the database secret");
    let secret = secret::fetch(&state.secrets, &config.secret_id).await?;
    let target = db::Target {
        host: config.host.clone().or(secret.host).ok_or_else(|| {
            InitError::Config("DB_HOST is not set and the secret carries no host".to_string())
        })?,
        port: config.port.or(secret.port).unwrap_or(config::DEFAULT_PORT),
        dbname: config
            .dbname
            .clone()
            .or(secret.dbname)
            .unwrap_or_else(|| config::DEFAULT_DBNAME.to_string()),
        user: config
            .user
            .clone()
            .or(secret.username)
            .unwrap_or_else(|| config::DEFAULT_USER.to_string()),
        password: secret.password,
        sslmode: config.sslmode,
        connect_timeout: config.connect_timeout,
    };
    tracing::info!(host = %target.host, port = target.port, db = %target.dbname, sslmode = target.sslmode.as_str(), "connecting");
    let mut client = db::connect(&target, ready.tls.clone()).await?;
    let canceller = cancel.get_or_init(|| db::Canceller::new(&client, ready.tls.clone()));
    let options = migrate::Options {
        lock_timeout: config.lock_timeout,
        statement_timeout: config.statement_timeout,
        ddl_lock_timeout: config.ddl_lock_timeout,
        deadline,
        cancel: Some(canceller.clone()),
        applied_by: format!("init-fn {} request {request_id}", env!("CARGO_PKG_VERSION")),
        exact_counts: request.exact_counts,
    };
    let report = migrate::run(&mut client, &state.migrations, action, &options).await?;
    tracing::info!(ms = report.duration_ms, "done");
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn events() {
        assert_eq!(parse_event(json!({})).unwrap(), Action::Apply);
        assert_eq!(parse_event(json!(null)).unwrap(), Action::Apply);
        assert_eq!(
            parse_event(json!({"action": "plan"})).unwrap(),
            Action::Plan
        );
        assert_eq!(
            parse_event(json!({"action": "status"})).unwrap(),
            Action::Status
        );
        assert_eq!(
            parse_event(json!({"action": "verify"})).unwrap(),
            Action::Verify
        );
        assert!(
            parse_request(json!({"action": "verify", "exact_counts": true}))
                .unwrap()
                .exact_counts
        );
        for bad in [
            json!({"action": "drop"}),
            json!({"action": "apply", "exact_counts": true}),
            json!({"exact_counts": true}),
            json!({"action": 5}),
            json!({"actoin": "apply"}),
            json!("apply"),
            json!([1, 2]),
        ] {
            let err = parse_event(bad.clone()).unwrap_err();
            assert_eq!(err.error_type(), "InvalidEvent", "{bad}");
            assert!(!err.one_line().contains('\n'));
        }
    }
}
