//! The one CloudWatch Embedded Metric Format writer: each invocation writes one EMF document on its
//! own stdout line (namespace `METRICS_NAMESPACE`, default `init-fn`, `off` writes none), which
//! CloudWatch Logs turns into metrics without an agent or an API call.

use std::{
    io::Write,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use serde::Serialize;

use crate::{
    engine::report::{Action, MigrationState, Report},
    error::InitError,
};

pub const DEFAULT_NAMESPACE: &str = "init-fn";

/// Reads `METRICS_NAMESPACE`: unset → `init-fn`, `off` → no metrics; anything CloudWatch would
/// refuse is a `Config` error naming the variable.
pub fn namespace(value: Option<&str>) -> Result<Option<String>, InitError> {
    let Some(value) = value.map(str::trim) else {
        return Ok(Some(DEFAULT_NAMESPACE.to_string()));
    };
    if value.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    let why = if value.is_empty() {
        Some("is empty (unset it for init-fn, or `off`)")
    } else if value.len() > 255 {
        Some("is longer than 255 characters")
    } else if !value.chars().all(|c| c.is_ascii() && !c.is_ascii_control()) {
        Some("holds a character CloudWatch does not accept (printable ASCII only)")
    } else if value.starts_with(':') {
        Some("starts with ':'")
    } else if value.starts_with("AWS/") {
        Some("starts with AWS/, which is reserved for AWS services")
    } else {
        None
    };
    match why {
        Some(why) => Err(InitError::Config(format!(
            "METRICS_NAMESPACE={value:?} {why}"
        ))),
        None => Ok(Some(value.to_string())),
    }
}

/// What one invocation did, as far as its metrics go.
pub struct Invocation<'a> {
    pub function_name: &'a str,
    pub request_id: &'a str,
    /// `None`: nothing ran, or the event named no action init-fn knows (`InvalidEvent`).
    pub action: Option<Action>,
    /// `Ok(None)`: succeeded without running anything (no report, so no migration counts).
    pub result: Result<Option<&'a Report>, &'a InitError>,
    pub duration: Duration,
    pub at: SystemTime,
}

/// The writer, configured once at cold start.
pub struct Metrics {
    namespace: Option<String>,
}

impl Metrics {
    /// `METRICS_NAMESPACE` from the environment; a bad value keeps the default here (the metrics of
    /// the `Config` error it causes still need a namespace).
    pub fn from_env() -> Metrics {
        let value = std::env::var("METRICS_NAMESPACE").ok();
        let namespace =
            namespace(value.as_deref()).unwrap_or_else(|_| Some(DEFAULT_NAMESPACE.to_string()));
        Metrics { namespace }
    }

    /// Writes the invocation's document on its own stdout line (nothing with `off`).
    pub fn write(&self, invocation: &Invocation<'_>) {
        let Some(namespace) = &self.namespace else {
            return;
        };
        let mut line = document(namespace, invocation);
        line.push('\n');
        // Metrics that cannot be written are not a reason to fail the invocation.
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(line.as_bytes()).and_then(|()| out.flush());
    }
}

/// The EMF document of one invocation, as one line of JSON.
pub fn document(namespace: &str, invocation: &Invocation<'_>) -> String {
    let failed = invocation.result.as_ref().err();
    let report = invocation.result.ok().flatten();
    let count = |state: &[MigrationState]| {
        report.map(|r| {
            r.migrations
                .iter()
                .filter(|m| state.contains(&m.state))
                .count() as u64
        })
    };
    let mut dimensions = vec![&["FunctionName", "Action"][..]];
    if failed.is_some() {
        dimensions.push(&["FunctionName", "ErrorType"]);
    }
    let mut metrics = vec![Metric::new("Duration", "Milliseconds")];
    // Without a report (a failed run's is not returned) the counts are unknown: absent, never 0.
    if report.is_some() {
        metrics.push(Metric::new("MigrationsApplied", "Count"));
        metrics.push(Metric::new("MigrationsPending", "Count"));
    }
    metrics.push(Metric::new("Succeeded", "Count"));
    metrics.push(Metric::new("Failed", "Count"));
    let doc = Document {
        aws: Aws {
            timestamp: millis(invocation.at),
            cloud_watch_metrics: [Directive {
                namespace,
                dimensions,
                metrics,
            }],
        },
        function_name: invocation.function_name,
        action: invocation.action.map_or("none", action_name),
        error_type: failed.map(|e| e.error_type()),
        request_id: invocation.request_id,
        duration: invocation.duration.as_millis() as u64,
        migrations_applied: count(&[MigrationState::Applied, MigrationState::Adopted]),
        migrations_pending: count(&[MigrationState::Pending]),
        succeeded: u8::from(failed.is_none()),
        failed: u8::from(failed.is_some()),
    };
    serde_json::to_string(&doc).expect("an EMF document serializes")
}

/// The action as the event and the report spell it.
fn action_name(action: Action) -> &'static str {
    match action {
        Action::Apply => "apply",
        Action::Plan => "plan",
        Action::Status => "status",
        Action::Verify => "verify",
    }
}

fn millis(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64
}

/// The root node: the `_aws` metadata, then the dimension and metric members it refers to.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Document<'a> {
    #[serde(rename = "_aws")]
    aws: Aws<'a>,
    function_name: &'a str,
    action: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    error_type: Option<&'a str>,
    /// Not a dimension: finds the invocation's log lines from a data point.
    #[serde(rename = "requestId")]
    request_id: &'a str,
    duration: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    migrations_applied: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    migrations_pending: Option<u64>,
    succeeded: u8,
    failed: u8,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Aws<'a> {
    timestamp: u64,
    cloud_watch_metrics: [Directive<'a>; 1],
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Directive<'a> {
    namespace: &'a str,
    dimensions: Vec<&'static [&'static str]>,
    metrics: Vec<Metric>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Metric {
    name: &'static str,
    unit: &'static str,
}

impl Metric {
    fn new(name: &'static str, unit: &'static str) -> Metric {
        Metric { name, unit }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespace_setting() {
        assert_eq!(namespace(None).unwrap().as_deref(), Some("init-fn"));
        assert_eq!(namespace(Some("off")).unwrap(), None);
        assert_eq!(namespace(Some("OFF")).unwrap(), None);
        assert_eq!(
            namespace(Some("ca-a2a/schema")).unwrap().as_deref(),
            Some("ca-a2a/schema")
        );
        for bad in ["", "AWS/Lambda", ":x", "caf\u{e9}", &"n".repeat(256)] {
            let err = namespace(Some(bad)).unwrap_err();
            assert_eq!(err.error_type(), "Config");
            assert!(err.to_string().contains("METRICS_NAMESPACE"), "{err}");
        }
    }

    #[test]
    fn action_names_are_the_event_names() {
        for action in [Action::Apply, Action::Plan, Action::Status, Action::Verify] {
            assert_eq!(
                serde_json::to_value(action).unwrap(),
                serde_json::Value::from(action_name(action))
            );
        }
    }

    #[test]
    fn a_failure_adds_the_error_type_dimension_set() {
        let err = InitError::Auth("password authentication failed".into());
        let doc = document(
            "init-fn",
            &Invocation {
                function_name: "ca-a2a-db-init",
                request_id: "r-1",
                action: Some(Action::Apply),
                result: Err(&err),
                duration: Duration::from_millis(42),
                at: UNIX_EPOCH + Duration::from_millis(1_796_119_200_123),
            },
        );
        assert_eq!(
            doc,
            concat!(
                r#"{"_aws":{"Timestamp":1796119200123,"CloudWatchMetrics":[{"Namespace":"init-fn","#,
                r#""Dimensions":[["FunctionName","Action"],["FunctionName","ErrorType"]],"#,
                r#""Metrics":[{"Name":"Duration","Unit":"Milliseconds"},{"Name":"Succeeded","Unit":"Count"},"#,
                r#"{"Name":"Failed","Unit":"Count"}]}]},"FunctionName":"ca-a2a-db-init","Action":"apply","#,
                r#""ErrorType":"Auth","requestId":"r-1","Duration":42,"Succeeded":0,"Failed":1}"#
            )
        );
    }
}
