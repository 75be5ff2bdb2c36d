//! What both local runtimes share: the function to run ([`FunctionSpec`]) and what one
//! invocation gave ([`Invocation`], [`Outcome`]), worded as Lambda words them.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};

use super::logging::LogControls;

/// Lambda's limit for the init phase of an on-demand function.
pub const INIT_LIMIT: Duration = Duration::from_secs(10);
/// The region the emulated function lives in unless `env` says otherwise.
const DEFAULT_REGION: &str = "eu-west-3";
const ACCOUNT: &str = "000000000000";

/// What to run and how: the deployed function's settings.
#[derive(Clone, Debug)]
pub struct FunctionSpec {
    /// The `bootstrap` executable (a `provided.al2023` custom runtime).
    pub bootstrap: PathBuf,
    /// A program (and its arguments) that runs the bootstrap, e.g. `["qemu-aarch64-static"]`.
    pub wrapper: Option<Vec<String>>,
    /// The function's own variables (`DB_*`, `AWS_ENDPOINT_URL_*`, …); they override Lambda's.
    pub env: Vec<(String, String)>,
    /// The function timeout: an invocation running longer is killed (`Sandbox.Timedout`).
    pub timeout: Duration,
    /// `AWS_LAMBDA_FUNCTION_MEMORY_SIZE` (reported, not enforced).
    pub memory_mb: u32,
    pub function_name: String,
    /// The `LoggingConfig` Lambda turns into `AWS_LAMBDA_LOG_FORMAT`/`_LEVEL`; `None`: none (Text).
    pub logging: Option<LogControls>,
}

impl FunctionSpec {
    /// A spec with the deployed defaults: no wrapper, no extra env, 60 s, 128 MB.
    pub fn new(bootstrap: impl Into<PathBuf>, function_name: &str) -> FunctionSpec {
        FunctionSpec {
            bootstrap: bootstrap.into(),
            wrapper: None,
            env: Vec::new(),
            timeout: Duration::from_secs(60),
            memory_mb: 128,
            function_name: function_name.to_string(),
            logging: None,
        }
    }

    pub fn region(&self) -> String {
        self.env
            .iter()
            .find(|(k, _)| k == "AWS_REGION")
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| DEFAULT_REGION.to_string())
    }

    /// `arn:aws:lambda:REGION:000000000000:function:NAME`.
    pub fn function_arn(&self) -> String {
        format!(
            "arn:aws:lambda:{}:{ACCOUNT}:function:{}",
            self.region(),
            self.function_name
        )
    }
}

/// How an invocation ended.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// The runtime posted a response.
    Response(Value),
    /// The runtime posted an invocation error (the handler returned `Err`).
    FunctionError {
        error_type: String,
        error_message: String,
    },
    /// The function ran past its timeout and was killed (Lambda's `Sandbox.Timedout`).
    Timeout,
    /// The process exited before responding.
    Crash { status: String },
    /// The runtime reported an init error (`/runtime/init/error`) before taking the event.
    InitError {
        error_type: String,
        error_message: String,
    },
}

/// One line for a person: `response {...}`, `FunctionError Auth: ...`, `timed out`, ...
impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::Response(v) => write!(f, "response {v}"),
            Outcome::FunctionError {
                error_type,
                error_message,
            } => write!(f, "FunctionError {error_type}: {error_message}"),
            Outcome::Timeout => f.write_str("timed out (killed at the function timeout)"),
            Outcome::Crash { status } => write!(f, "the process exited: {status}"),
            Outcome::InitError {
                error_type,
                error_message,
            } => write!(f, "init error {error_type}: {error_message}"),
        }
    }
}

/// One invocation's result, log and timings.
#[derive(Clone, Debug)]
pub struct Invocation {
    pub request_id: String,
    pub outcome: Outcome,
    /// stdout + stderr of the process during this invocation (on a cold start, init output
    /// too), framed by Lambda's `START`/`END`/`REPORT` lines.
    pub log: String,
    /// From handing the event to the runtime to its answer (or the kill).
    pub duration: Duration,
    /// Cold start only: from spawning the process to its first `next` request.
    pub init_duration: Option<Duration>,
    /// From the `invoke` call (including any spawn) to the outcome.
    pub total: Duration,
    /// Peak RSS of the bootstrap process so far (`VmHWM`), when it is still alive to ask.
    pub max_rss_kb: Option<u64>,
    /// `true` when this invocation started a new process.
    pub cold: bool,
}

impl Invocation {
    /// What Lambda's Invoke API returns: the payload and the `X-Amz-Function-Error` value.
    pub fn payload(&self, timeout: Duration) -> (Value, Option<&'static str>) {
        let rid = &self.request_id;
        match &self.outcome {
            Outcome::Response(v) => (v.clone(), None),
            Outcome::FunctionError {
                error_type,
                error_message,
            }
            | Outcome::InitError {
                error_type,
                error_message,
            } => (
                json!({"errorType": error_type, "errorMessage": error_message}),
                Some("Unhandled"),
            ),
            Outcome::Timeout => (
                json!({
                    "errorType": "Sandbox.Timedout",
                    "errorMessage": format!(
                        "RequestId: {rid} Error: Task timed out after {:.2} seconds",
                        timeout.as_secs_f64()
                    ),
                }),
                Some("Unhandled"),
            ),
            Outcome::Crash { status } => (
                json!({
                    "errorType": "Runtime.ExitError",
                    "errorMessage": format!("RequestId: {rid} Error: Runtime exited with error: {status}"),
                }),
                Some("Unhandled"),
            ),
        }
    }

    /// The `errorType` of a failed invocation (`Sandbox.Timedout`, `Runtime.ExitError`, or the
    /// runtime's own), `None` on success.
    pub fn error_type(&self) -> Option<String> {
        match &self.outcome {
            Outcome::Response(_) => None,
            Outcome::FunctionError { error_type, .. } | Outcome::InitError { error_type, .. } => {
                Some(error_type.clone())
            }
            Outcome::Timeout => Some("Sandbox.Timedout".to_string()),
            Outcome::Crash { .. } => Some("Runtime.ExitError".to_string()),
        }
    }
}
