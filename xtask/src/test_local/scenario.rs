//! The test-local scenario: the steps (fresh apply, rerun, status, verify, plan in one warm
//! process, then a wrong password in a cold one), each invocation checked against what the step
//! expects and for a leaked password.

use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::{Value, json};

use super::log_lines::{self, Volatile};
use super::target::Target;
use crate::local::function::{Function, Runtime};
use crate::local::invocation::{FunctionSpec, Invocation, Outcome};
use crate::local::logging::LogFormat;
use crate::local::postgres::PgServer;
use crate::local::secrets_manager::SecretsManager;

/// The deployed function's name (from the seed).
pub const FUNCTION_NAME: &str = "ca-a2a-db-init";
/// The secret the function reads by default (from the seed).
pub const SECRET_ID: &str = "ca-a2a/db-password";
/// A second secret holding a wrong password, for the `Auth` step.
pub const WRONG_SECRET_ID: &str = "ca-a2a/db-password-wrong";
const WRONG_PASSWORD: &str = "not-the-password";
/// The database the contract defaults to.
pub const DATABASE: &str = "documents_db";

/// One scenario step: the event sent and what came back.
pub struct Step {
    /// Snapshot name suffix, e.g. `apply_fresh`.
    pub name: &'static str,
    pub event: Value,
    pub invocation: Invocation,
    /// The Invoke API payload: the report, or `{"errorType", "errorMessage"}`.
    pub payload: Value,
    /// What the step expected, when it got something else.
    pub problem: Option<String>,
    /// Under JSON logging: its log lines and EMF document, redacted (see [`log_lines`]).
    pub log_lines: Option<Value>,
    /// Time since the scenario started, when the step finished.
    pub elapsed: Duration,
}

/// The outcome of [`run_scenario`].
pub struct Scenario {
    pub provider: &'static str,
    pub database: String,
    /// The server's port (redacted from error messages).
    pub port: u16,
    pub steps: Vec<Step>,
}

impl Scenario {
    /// Every step did what it should (snapshots aside).
    pub fn problems(&self) -> Vec<String> {
        self.steps
            .iter()
            .filter_map(|s| s.problem.as_ref().map(|p| format!("{}: {p}", s.name)))
            .collect()
    }
}

/// The function's environment for `server`: the contract's `DB_*` variables, and the
/// emulated Secrets Manager.
pub fn function_env(
    server: &PgServer,
    secrets: &SecretsManager,
    database: &str,
    secret_id: &str,
) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = vec![
        ("DB_HOST".into(), server.host().into()),
        ("DB_PORT".into(), server.port().to_string()),
        ("DB_NAME".into(), database.into()),
        ("DB_USER".into(), server.user().into()),
        ("DB_SECRET_ID".into(), secret_id.into()),
        ("DB_SSLMODE".into(), server.sslmode().into()),
        ("DB_CONNECT_TIMEOUT_S".into(), "10".into()),
        ("DB_LOCK_TIMEOUT_S".into(), "30".into()),
        ("AWS_REGION".into(), "eu-west-3".into()),
        (
            "AWS_ENDPOINT_URL_SECRETS_MANAGER".into(),
            secrets.endpoint(),
        ),
    ];
    if let Some(ca) = server.ca_bundle_path() {
        env.push(("DB_CA_BUNDLE".into(), ca.display().to_string()));
    }
    env
}

/// The database a run uses: `documents_db` on a server of its own, a fresh uniquely named one
/// on a server given by URL (so an existing `documents_db` there is never touched).
pub fn scenario_database(server: &PgServer) -> String {
    if server.kind() == "url" {
        format!(
            "init_fn_test_{}",
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        )
    } else {
        DATABASE.to_string()
    }
}

/// Fresh apply → rerun → status → verify → plan (one warm process, as Lambda reuses it), then
/// an invocation whose secret holds a wrong password (a cold process; expects `Auth`).
/// `on_step` sees each step as it finishes (progress output).
pub async fn run_scenario(
    server: &PgServer,
    target: &Target,
    on_step: impl FnMut(&Step),
) -> anyhow::Result<Scenario> {
    run_scenario_under(Runtime::Emulator, server, target, on_step).await
}

/// [`run_scenario`] under the given runtime (same steps, same expectations).
pub async fn run_scenario_under(
    runtime: Runtime,
    server: &PgServer,
    target: &Target,
    mut on_step: impl FnMut(&Step),
) -> anyhow::Result<Scenario> {
    let started = Instant::now();
    let database = scenario_database(server);
    server.create_database(&database).await?;
    let secrets = SecretsManager::start().await?;
    secrets.put(SECRET_ID, server.password());
    secrets.put(WRONG_SECRET_ID, WRONG_PASSWORD);

    let spec = |secret_id: &str| {
        let mut spec = FunctionSpec::new(&target.bootstrap, FUNCTION_NAME);
        spec.wrapper = target.wrapper.clone();
        spec.env = target.env.clone();
        spec.logging = target.logging;
        spec.env
            .extend(function_env(server, &secrets, &database, secret_id));
        spec
    };

    let plan: [(&'static str, Value, Expect); 5] = [
        ("apply_fresh", json!({}), Expect::Report("apply")),
        (
            "apply_rerun",
            json!({"action": "apply"}),
            Expect::Report("apply"),
        ),
        (
            "status",
            json!({"action": "status"}),
            Expect::Report("status"),
        ),
        (
            "verify",
            json!({"action": "verify"}),
            Expect::Report("verify"),
        ),
        ("plan", json!({"action": "plan"}), Expect::Report("plan")),
    ];
    let mut steps = Vec::new();
    let json_logs = target.logging.is_some_and(|l| l.format == LogFormat::Json);
    let volatile = Volatile {
        function_name: FUNCTION_NAME,
        database: &database,
        canonical_database: DATABASE,
        port: server.port(),
    };
    let checks = Checks {
        server,
        started,
        json_logs: json_logs.then_some(&volatile),
    };
    let mut function = Function::start(runtime, spec(SECRET_ID)).await?;
    for (name, event, expect) in plan {
        let step = run_step(&mut function, name, event, expect, &checks).await?;
        on_step(&step);
        steps.push(step);
    }
    function.shutdown().await;

    let mut wrong = Function::start(runtime, spec(WRONG_SECRET_ID)).await?;
    let step = run_step(
        &mut wrong,
        "bad_password",
        json!({"action": "apply"}),
        Expect::Error("Auth"),
        &checks,
    )
    .await?;
    on_step(&step);
    steps.push(step);
    wrong.shutdown().await;

    if server.kind() == "url" {
        // This run created it; nothing else on that server is dropped.
        let client = server.client("postgres").await?;
        client
            .batch_execute(&format!("DROP DATABASE \"{database}\""))
            .await
            .with_context(|| format!("test-local: drop the run's database {database}"))?;
    }
    Ok(Scenario {
        provider: server.kind(),
        database,
        port: server.port(),
        steps,
    })
}

enum Expect {
    Report(&'static str),
    Error(&'static str),
}

/// What every step is checked against besides its expectation.
struct Checks<'a> {
    server: &'a PgServer,
    started: Instant,
    /// Under JSON logging: the log lines are checked too.
    json_logs: Option<&'a Volatile<'a>>,
}

async fn run_step(
    function: &mut Function,
    name: &'static str,
    event: Value,
    expect: Expect,
    checks: &Checks<'_>,
) -> anyhow::Result<Step> {
    let server = checks.server;
    let invocation = function.invoke(event.clone()).await?;
    let (payload, _) = invocation.payload(function.spec().timeout);
    let mut problem = match (&expect, &invocation.outcome) {
        (Expect::Report(action), Outcome::Response(v)) => {
            (v["status"] != "ok" || v["action"] != *action).then(|| {
                format!(
                    "expected an ok `{action}` report, got status {} action {}",
                    v["status"], v["action"]
                )
            })
        }
        (Expect::Error(want), Outcome::FunctionError { error_type, .. }) => {
            (error_type != want).then(|| format!("expected errorType {want}, got {error_type}"))
        }
        (Expect::Report(action), _) => Some(format!(
            "expected an ok `{action}` report, got {}",
            describe(&invocation)
        )),
        (Expect::Error(want), _) => Some(format!(
            "expected errorType {want}, got {}",
            describe(&invocation)
        )),
    };
    // Neither the real password nor the wrong one the Auth step uses may leak.
    let leaked = [server.password(), WRONG_PASSWORD]
        .into_iter()
        .filter(|p| !p.is_empty())
        .any(|p| invocation.log.contains(p) || payload.to_string().contains(p));
    if leaked {
        problem = Some("a database password appears in the log or the payload".to_string());
    }
    let log_lines = match checks.json_logs.map(|v| log_lines::check(&invocation, v)) {
        Some(Ok(lines)) => Some(lines),
        Some(Err(why)) => {
            problem = problem.or(Some(format!("log: {why}")));
            None
        }
        None => None,
    };
    Ok(Step {
        name,
        event,
        invocation,
        payload,
        problem,
        log_lines,
        elapsed: checks.started.elapsed(),
    })
}

fn describe(invocation: &Invocation) -> String {
    match &invocation.outcome {
        Outcome::Response(v) => format!("a response {v}"),
        Outcome::FunctionError {
            error_type,
            error_message,
        } => format!("{error_type}: {error_message}"),
        Outcome::Timeout => "a timeout (Sandbox.Timedout)".to_string(),
        Outcome::Crash { status } => format!("a crash ({status})"),
        Outcome::InitError {
            error_type,
            error_message,
        } => format!("an init error {error_type}: {error_message}"),
    }
}
