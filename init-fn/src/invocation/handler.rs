//! The handler: the state every invocation shares (built once at cold start), and `handle`, the
//! whole invocation: event → secret (or IAM token) → TLS session → migration engine → report (→ a
//! custom resource's answer).
use std::{
    sync::{Mutex, OnceLock},
    time::SystemTime,
};

use serde::Serialize;

use crate::session::tls::Building;
use crate::{Action, Config, Deadline, InitError, Report, Request, Work};

/// What every invocation shares, built once at cold start.
pub struct State {
    /// A bad environment is reported on every invocation as `Config`, not as a crash loop.
    ready: Result<Ready, InitError>,
    /// Made on the first fetch: its HTTPS connector reads every system CA certificate, which a
    /// `DB_AUTH=iam` function never needs and a `secret` one only once its first event is in (by
    /// then the TLS connector's thread is well under way).
    secrets: std::sync::LazyLock<aws_sdk_secretsmanager::Client, MakeClient>,
    /// The secret that last logged in, kept for warm invocations; forgotten as soon as the server
    /// refuses its password (a rotation), then read again.
    secret: Mutex<Option<crate::session::secret::Secret>>,
    migrations: Vec<crate::engine::run::Migration>,
    /// What the migrations produce (`sql/schema.txt`, parsed once): what drift compares with.
    expected: Option<crate::schema::model::Schema>,
    answers: crate::invocation::custom_resource::Client,
}

type MakeClient = Box<dyn FnOnce() -> aws_sdk_secretsmanager::Client + Send>;

struct Ready {
    config: Config,
    /// Started at cold start on its own thread; the first connection waits for it.
    tls: Building,
}

impl State {
    /// `config` is validated and the CA bundle read here, once; the TLS connector starts building
    /// on its own thread (see [`Building`]).
    pub fn new(
        config: Result<Config, InitError>,
        secrets: impl FnOnce() -> aws_sdk_secretsmanager::Client + Send + 'static,
        migrations: Vec<crate::engine::run::Migration>,
    ) -> State {
        let ready = config.and_then(|config| {
            let ca = match &config.ca_bundle {
                Some(path) => {
                    let ca = std::fs::read(path).map_err(|e| {
                        InitError::Config(format!("DB_CA_BUNDLE={}: {e}", path.display()))
                    })?;
                    Some((ca, format!("DB_CA_BUNDLE {}", path.display())))
                }
                None => None,
            };
            let tls = Building::start(config.sslmode, ca);
            Ok(Ready { config, tls })
        });
        // sql/schema.txt describes the embedded migrations; other ones bring their own (`with_expected`).
        let expected = crate::schema::drift::embedded()
            .filter(|_| same_migrations(&migrations, &crate::engine::run::embedded()));
        State {
            ready,
            secrets: std::sync::LazyLock::new(Box::new(secrets)),
            secret: Mutex::new(None),
            migrations,
            expected,
            answers: crate::invocation::custom_resource::Client::default(),
        }
    }

    /// The same state comparing with `expected` instead of the embedded `sql/schema.txt` (tests
    /// that bring their own migrations bring the schema they produce).
    pub fn with_expected(self, expected: Option<crate::schema::model::Schema>) -> State {
        State { expected, ..self }
    }

    fn cached_secret(&self) -> Option<crate::session::secret::Secret> {
        self.secret
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn keep_secret(&self, secret: Option<crate::session::secret::Secret>) {
        *self.secret.lock().unwrap_or_else(|e| e.into_inner()) = secret;
    }

    /// The configured database's name (the default when unset or the configuration is bad).
    fn database(&self) -> String {
        self.ready
            .as_ref()
            .ok()
            .and_then(|ready| ready.config.dbname.clone())
            .unwrap_or_else(|| crate::config::DEFAULT_DBNAME.to_string())
    }
}

/// The same versions with the same checksums.
fn same_migrations(
    a: &[crate::engine::run::Migration],
    b: &[crate::engine::run::Migration],
) -> bool {
    let key = |m: &crate::engine::run::Migration| (m.version, m.checksum.clone());
    let (mut a, mut b): (Vec<_>, Vec<_>) =
        (a.iter().map(key).collect(), b.iter().map(key).collect());
    a.sort();
    b.sort();
    a == b
}

/// What an invocation returns: the run's report, or the note that a deletion ran nothing.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum Response {
    Report(Report),
    Kept(Kept),
}

/// A CloudFormation Delete or a Terraform delete: the schema is kept, nothing is touched.
#[derive(Debug, Serialize)]
pub struct Kept {
    pub status: &'static str,
    pub database: String,
    pub reason: String,
}

impl Response {
    /// The report, when something ran.
    pub fn report(&self) -> Option<&Report> {
        match self {
            Response::Report(report) => Some(report),
            Response::Kept(_) => None,
        }
    }
}

/// One invocation; `deadline` is the Lambda context's (`None`: no limit). A custom-resource request
/// is answered on its `ResponseURL` whatever the outcome, then the outcome is returned as usual.
pub async fn handle(
    state: &State,
    event: serde_json::Value,
    request_id: &str,
    deadline: Option<SystemTime>,
) -> Result<Response, InitError> {
    handle_parsed(
        state,
        crate::invocation::event::parse(event),
        request_id,
        deadline,
    )
    .await
}

/// [`handle`] for an event already parsed (the bootstrap reads its action for the metrics first).
pub async fn handle_parsed(
    state: &State,
    event: crate::invocation::event::Event,
    request_id: &str,
    deadline: Option<SystemTime>,
) -> Result<Response, InitError> {
    let Some(reply) = event.reply else {
        return respond(state, event.request?, request_id, deadline).await;
    };
    // The work stops early enough for the answer to be sent before Lambda's deadline.
    let work_deadline = deadline.map(|d| d - crate::invocation::custom_resource::ANSWER_WINDOW);
    let outcome = match event.request {
        Ok(request) => respond(state, request, request_id, work_deadline).await,
        Err(err) => Err(err),
    };
    let answered = match &outcome {
        Ok(Response::Report(report)) => crate::invocation::custom_resource::Outcome::Ran(report),
        Ok(Response::Kept(_)) => crate::invocation::custom_resource::Outcome::Kept,
        Err(err) => crate::invocation::custom_resource::Outcome::Failed(err),
    };
    let database = match &outcome {
        Ok(Response::Report(report)) => report.database.clone(),
        _ => state.database(),
    };
    crate::invocation::custom_resource::answer(
        &state.answers,
        &reply,
        &answered,
        &database,
        deadline,
    )
    .await;
    outcome
}

/// The request's work under the invocation's deadline.
async fn respond(
    state: &State,
    request: Request,
    request_id: &str,
    deadline: Option<SystemTime>,
) -> Result<Response, InitError> {
    let Work::Run(action) = request.work else {
        let caller = request.caller.describe();
        tracing::info!(%caller, "a deletion: the schema is kept, nothing runs");
        return Ok(Response::Kept(Kept {
            status: "skipped",
            database: state.database(),
            reason: format!("{caller}: a deletion never drops the schema; nothing was run"),
        }));
    };
    let ready = state.ready.as_ref().map_err(InitError::clone)?;
    let deadline = Deadline::new(deadline, ready.config.deadline_margin);
    let cancel = OnceLock::new();
    let run = invocation(
        state, ready, action, &request, request_id, deadline, &cancel,
    );
    let Some(hard) = deadline.hard() else {
        return run.await.map(Response::Report);
    };
    match tokio::time::timeout_at(hard, run).await {
        Ok(result) => result.map(Response::Report),
        // The last resort when a step outside the migrations (secret, connect, inventory) hangs:
        // answer Lambda before it kills us, and stop the server's statement (its locks) too.
        Err(_) => {
            if let Some(cancel) = cancel.get() {
                crate::session::Canceller::cancel(cancel, deadline.margin() / 4).await;
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
    action: Action,
    request: &Request,
    request_id: &str,
    deadline: Deadline,
    cancel: &OnceLock<crate::session::Canceller>,
) -> Result<Report, InitError> {
    let config = &ready.config;
    // Boxed: the login paths nest deep enough to hit the layout recursion limit inline.
    let (mut client, notices) = Box::pin(open(state, ready, action)).await?;
    // Built by now: the session above used it.
    let tls = ready.tls.get().await?;
    let canceller = cancel.get_or_init(|| crate::session::Canceller::new(&client, tls));
    let options = crate::engine::run::Options {
        lock_timeout: config.lock_timeout,
        statement_timeout: config.statement_timeout,
        ddl_lock_timeout: config.ddl_lock_timeout,
        deadline,
        cancel: Some(canceller.clone()),
        applied_by: format!("init-fn {} request {request_id}", env!("CARGO_PKG_VERSION")),
        exact_counts: request.exact_counts,
        expected: state.expected.clone(),
        drift: config.drift,
    };
    let report =
        crate::engine::run::run(&mut client, &notices, &state.migrations, action, &options).await?;
    tracing::info!(ms = report.duration_ms, "done");
    Ok(report)
}

/// The database session, logged in per `DB_AUTH`.
async fn open(
    state: &State,
    ready: &Ready,
    action: Action,
) -> Result<(tokio_postgres::Client, crate::session::Notices), InitError> {
    let config = &ready.config;
    let region = match &config.auth {
        crate::config::Auth::Iam { region } => region,
        crate::config::Auth::Secret => return open_with_secret(state, ready, action).await,
    };
    let credentials = crate::session::iam::Credentials::from_env()?;
    let host = config
        .host
        .clone()
        .ok_or_else(|| InitError::Config("DB_AUTH=iam needs DB_HOST".to_string()))?;
    let port = config.port.unwrap_or(crate::config::DEFAULT_PORT);
    let user = config
        .user
        .clone()
        .unwrap_or_else(|| crate::config::DEFAULT_IAM_USER.to_string());
    tracing::info!(?action, %user, %region, "signing an IAM database token (no secret is read)");
    let password =
        crate::session::iam::token(&host, port, &user, region, &credentials, SystemTime::now())?;
    let target = crate::session::Target {
        host,
        port,
        dbname: config
            .dbname
            .clone()
            .unwrap_or_else(|| crate::config::DEFAULT_DBNAME.to_string()),
        user,
        password,
        sslmode: config.sslmode,
        connect_timeout: config.connect_timeout,
    };
    let tls = ready.tls.get().await?;
    log_connecting(&target);
    crate::session::connect(&target, tls)
        .await
        .map_err(|err| crate::session::iam::refused(err, &target.user))
}

/// `DB_AUTH=secret`: the kept secret, or a fresh read. When the server refuses the password
/// (28P01: the secret was rotated since), the secret is read once more and, if it changed, the
/// login retried once; a second refusal is `Auth`.
async fn open_with_secret(
    state: &State,
    ready: &Ready,
    action: Action,
) -> Result<(tokio_postgres::Client, crate::session::Notices), InitError> {
    let config = &ready.config;
    let secret = async {
        match state.cached_secret() {
            Some(secret) => Ok(secret),
            None => {
                tracing::info!(?action, secret_id = %config.secret_id, "fetching the database secret");
                crate::session::secret::fetch(&state.secrets, &config.secret_id).await
            }
        }
    };
    // The secret's fetch and the connector's last milliseconds overlap; a TLS error comes first.
    let (secret, tls) = tokio::join!(secret, ready.tls.get());
    let (tls, secret) = (tls?, secret?);
    let target = secret_target(config, &secret)?;
    log_connecting(&target);
    let err = match crate::session::connect(&target, tls.clone()).await {
        Ok(session) => {
            state.keep_secret(Some(secret));
            return Ok(session);
        }
        Err(err) => err,
    };
    state.keep_secret(None);
    if !is_refused_password(&err) {
        return Err(err);
    }
    tracing::warn!(secret_id = %config.secret_id, "the server refused the secret's password; reading the secret again (rotated?)");
    let again = crate::session::secret::fetch(&state.secrets, &config.secret_id).await?;
    if again.password.expose() == secret.password.expose() {
        return Err(err);
    }
    let target = secret_target(config, &again)?;
    let session = crate::session::connect(&target, tls).await?;
    state.keep_secret(Some(again));
    Ok(session)
}

/// An `Auth` failure for a wrong password (SQLSTATE 28P01), not a pg_hba rejection.
fn is_refused_password(err: &InitError) -> bool {
    matches!(err, InitError::Auth(message) if message.contains("SQLSTATE 28P01"))
}

/// Where to connect: the environment first, then what the secret carries, then the defaults.
fn secret_target(
    config: &Config,
    secret: &crate::session::secret::Secret,
) -> Result<crate::session::Target, InitError> {
    Ok(crate::session::Target {
        host: config
            .host
            .clone()
            .or_else(|| secret.host.clone())
            .ok_or_else(|| {
                InitError::Config("DB_HOST is not set and the secret carries no host".to_string())
            })?,
        port: config
            .port
            .or(secret.port)
            .unwrap_or(crate::config::DEFAULT_PORT),
        dbname: config
            .dbname
            .clone()
            .or_else(|| secret.dbname.clone())
            .unwrap_or_else(|| crate::config::DEFAULT_DBNAME.to_string()),
        user: config
            .user
            .clone()
            .or_else(|| secret.username.clone())
            .unwrap_or_else(|| crate::config::DEFAULT_USER.to_string()),
        password: secret.password.clone(),
        sslmode: config.sslmode,
        connect_timeout: config.connect_timeout,
    })
}

fn log_connecting(target: &crate::session::Target) {
    tracing::info!(host = %target.host, port = target.port, db = %target.dbname, user = %target.user, sslmode = target.sslmode.as_str(), "connecting");
}
