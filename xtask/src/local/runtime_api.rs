//! The Lambda Runtime API on 127.0.0.1, and the sandbox around one bootstrap process: it spawns
//! the bootstrap with the environment Lambda sets, hands it events, enforces the timeout (kill +
//! `Sandbox.Timedout`), captures stdout/stderr as the log, and reports init errors and crashes.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use xtask::local::runtime_api::{FunctionSpec, LocalFunction, Outcome};
//! let spec = FunctionSpec::new("target/release/init-fn", "ca-a2a-db-init");
//! let mut function = LocalFunction::start(spec).await?;
//! let first = function.invoke(serde_json::json!({"action": "status"})).await?; // cold
//! let second = function.invoke(serde_json::json!({})).await?; // warm: same process
//! if let Outcome::Response(report) = &second.outcome { println!("{report}") }
//! # Ok(()) }
//! ```

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::sync::mpsc;

/// Lambda's limit for the init phase of an on-demand function.
pub const INIT_LIMIT: Duration = Duration::from_secs(10);
/// The region the emulated function lives in unless `env` says otherwise.
const DEFAULT_REGION: &str = "eu-west-3";
const ACCOUNT: &str = "000000000000";
/// After a response, keep reading the child's output until it is quiet this long.
const LOG_QUIET: Duration = Duration::from_millis(15);

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
        }
    }

    fn region(&self) -> String {
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

/// A function with at most one live bootstrap process (warm between invocations). A timeout,
/// crash or init error discards the process; the next invocation starts a new one (cold).
pub struct LocalFunction {
    spec: FunctionSpec,
    sandbox: Option<Sandbox>,
}

impl LocalFunction {
    /// Prepare the function; the process starts on the first invocation (as in Lambda).
    pub async fn start(spec: FunctionSpec) -> anyhow::Result<LocalFunction> {
        anyhow::ensure!(
            spec.bootstrap.is_file(),
            "runtime api: bootstrap {} does not exist",
            spec.bootstrap.display()
        );
        Ok(LocalFunction {
            spec,
            sandbox: None,
        })
    }

    pub fn spec(&self) -> &FunctionSpec {
        &self.spec
    }

    /// The pid of the live bootstrap process, if one is warm.
    pub fn pid(&self) -> Option<u32> {
        self.sandbox.as_ref().and_then(|s| s.child.id())
    }

    /// Stop the warm process, if any (the next invocation is cold).
    pub async fn shutdown(&mut self) {
        if let Some(mut sandbox) = self.sandbox.take() {
            let _ = sandbox.child.kill().await;
        }
    }

    /// Send one event and wait for the outcome. `Err` only when the sandbox itself fails
    /// (e.g. the bootstrap cannot be spawned); everything the function does is an [`Outcome`].
    pub async fn invoke(&mut self, payload: Value) -> anyhow::Result<Invocation> {
        let started = Instant::now();
        let cold = self.sandbox.is_none();
        if cold {
            self.sandbox = Some(Sandbox::spawn(&self.spec).await?);
        }
        let sandbox = self.sandbox.as_mut().expect("sandbox just ensured");
        let request_id = uuid::Uuid::new_v4().to_string();
        sandbox
            .events
            .send(Event {
                request_id: request_id.clone(),
                payload,
            })
            .map_err(|_| anyhow::anyhow!("runtime api: server is gone"))?;

        let first_deadline = if cold { INIT_LIMIT } else { self.spec.timeout };
        let mut deadline = tokio::time::Instant::now() + first_deadline;
        let mut picked: Option<Instant> = None;
        let mut init_duration = None;
        let mut exited = false;
        let outcome = loop {
            tokio::select! {
                biased;
                reply = sandbox.replies.recv() => match reply {
                    Some(Reply::Next(id)) if id == request_id => {
                        let now = Instant::now();
                        if cold && init_duration.is_none() {
                            init_duration = Some(now - sandbox.spawned);
                        }
                        picked = Some(now);
                        deadline = tokio::time::Instant::now() + self.spec.timeout;
                    }
                    Some(Reply::Response(id, value)) if id == request_id => break Outcome::Response(value),
                    Some(Reply::Error(id, error_type, error_message)) if id == request_id => {
                        break Outcome::FunctionError { error_type, error_message };
                    }
                    Some(Reply::InitError(error_type, error_message)) => {
                        break Outcome::InitError { error_type, error_message };
                    }
                    Some(_) => {} // a stale request id: ignore, as Lambda does
                    None => anyhow::bail!("runtime api: server stopped"),
                },
                status = sandbox.child.wait() => {
                    exited = true;
                    let status = status.context("runtime api: wait for bootstrap")?;
                    break Outcome::Crash { status: exit_error(status) };
                }
                _ = tokio::time::sleep_until(deadline) => break Outcome::Timeout,
            }
        };
        let end = Instant::now();
        let duration = end - picked.unwrap_or(end);
        let max_rss_kb = if exited {
            None
        } else {
            sandbox.child.id().and_then(vm_hwm_kb)
        };

        let discard = !matches!(
            outcome,
            Outcome::Response(_) | Outcome::FunctionError { .. }
        );
        if discard && !exited {
            let _ = sandbox.child.kill().await;
        }
        // The process wrote its log before answering; let the readers catch up (to EOF if it died).
        let output = sandbox.drain_log(discard).await;

        let mut log = format!("START RequestId: {request_id} Version: $LATEST\n");
        log.push_str(&output);
        if outcome == Outcome::Timeout {
            log.push_str(&format!(
                "{request_id} Task timed out after {:.2} seconds\n",
                self.spec.timeout.as_secs_f64()
            ));
        }
        log.push_str(&format!("END RequestId: {request_id}\n"));
        log.push_str(&format!(
            "REPORT RequestId: {request_id}\tDuration: {:.2} ms\tBilled Duration: {} ms\tMemory Size: {} MB\tMax Memory Used: {}{}\n",
            duration.as_secs_f64() * 1000.0,
            (duration.as_secs_f64() * 1000.0).ceil() as u64,
            self.spec.memory_mb,
            max_rss_kb.map_or("?".to_string(), |kb| format!("{} MB", kb.div_ceil(1024))),
            init_duration.map_or(String::new(), |d| format!(
                "\tInit Duration: {:.2} ms",
                d.as_secs_f64() * 1000.0
            )),
        ));
        if discard {
            self.sandbox = None;
        }
        Ok(Invocation {
            request_id,
            outcome,
            log,
            duration,
            init_duration,
            total: end - started,
            max_rss_kb,
            cold,
        })
    }
}

/// How Lambda words a process exit in `Runtime exited with error: …` (Go's `ProcessState`
/// text, as RIE prints it): `exit status 3`, `signal: killed`.
pub fn exit_error(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(signal)) => {
            let name = match signal {
                6 => "aborted".to_string(),
                9 => "killed".to_string(),
                11 => "segmentation fault".to_string(),
                15 => "terminated".to_string(),
                other => format!("signal {other}"),
            };
            format!("signal: {name}")
        }
        (None, None) => status.to_string(),
    }
}

/// `VmHWM` (peak resident set) of a live process, in KiB.
pub fn vm_hwm_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// The environment Lambda gives a `provided.al2023` function, before the function's own.
pub fn lambda_env(spec: &FunctionSpec, runtime_api: &str) -> Vec<(String, String)> {
    let region = spec.region();
    let name = &spec.function_name;
    let mut env: Vec<(String, String)> = [
        ("AWS_LAMBDA_RUNTIME_API", runtime_api.to_string()),
        ("AWS_LAMBDA_FUNCTION_NAME", name.clone()),
        (
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
            spec.memory_mb.to_string(),
        ),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".to_string()),
        ("AWS_LAMBDA_LOG_GROUP_NAME", format!("/aws/lambda/{name}")),
        (
            "AWS_LAMBDA_LOG_STREAM_NAME",
            "local/[$LATEST]0000000000000000".to_string(),
        ),
        ("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand".to_string()),
        ("AWS_REGION", region.clone()),
        ("AWS_DEFAULT_REGION", region),
        ("AWS_ACCESS_KEY_ID", "AKIDLOCALEMULATOR".to_string()),
        ("AWS_SECRET_ACCESS_KEY", "local-emulator-secret".to_string()),
        ("AWS_SESSION_TOKEN", "local-emulator-session".to_string()),
        ("_HANDLER", "bootstrap".to_string()),
        ("LAMBDA_TASK_ROOT", "/var/task".to_string()),
        ("LAMBDA_RUNTIME_DIR", "/var/runtime".to_string()),
        ("TZ", ":UTC".to_string()),
        ("LANG", "en_US.UTF-8".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    // The host's PATH, so a wrapper such as qemu-aarch64-static is found.
    if let Ok(path) = std::env::var("PATH") {
        env.push(("PATH".to_string(), path));
    }
    env
}

struct Event {
    request_id: String,
    payload: Value,
}

enum Reply {
    /// The runtime took the event with this id (`GET …/invocation/next` answered).
    Next(String),
    Response(String, Value),
    Error(String, String, String),
    InitError(String, String),
}

/// One bootstrap process and the Runtime API server it talks to. Each process gets its own
/// server, so a dead process's pending `next` can never swallow a later event.
struct Sandbox {
    child: tokio::process::Child,
    spawned: Instant,
    events: mpsc::UnboundedSender<Event>,
    replies: mpsc::UnboundedReceiver<Reply>,
    log: mpsc::UnboundedReceiver<String>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        self.server.abort();
    }
}

struct Api {
    events: tokio::sync::Mutex<mpsc::UnboundedReceiver<Event>>,
    replies: mpsc::UnboundedSender<Reply>,
    function_arn: String,
    timeout: Duration,
}

impl Sandbox {
    async fn spawn(spec: &FunctionSpec) -> anyhow::Result<Sandbox> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .context("runtime api: bind 127.0.0.1")?;
        let addr = listener.local_addr()?;
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let (replies_tx, replies_rx) = mpsc::unbounded_channel();
        let api = Arc::new(Api {
            events: tokio::sync::Mutex::new(events_rx),
            replies: replies_tx,
            function_arn: spec.function_arn(),
            timeout: spec.timeout,
        });
        let app = Router::new()
            .route("/2018-06-01/runtime/invocation/next", get(next))
            .route(
                "/2018-06-01/runtime/invocation/{id}/response",
                post(response),
            )
            .route("/2018-06-01/runtime/invocation/{id}/error", post(error))
            .route("/2018-06-01/runtime/init/error", post(init_error))
            .with_state(api);
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });

        let (program, mut args) = match &spec.wrapper {
            Some(wrapper) if !wrapper.is_empty() => (wrapper[0].clone(), wrapper[1..].to_vec()),
            _ => (spec.bootstrap.display().to_string(), Vec::new()),
        };
        if spec.wrapper.as_ref().is_some_and(|w| !w.is_empty()) {
            args.push(spec.bootstrap.display().to_string());
        }
        let mut cmd = tokio::process::Command::new(&program);
        cmd.args(&args)
            .env_clear()
            .envs(lambda_env(spec, &addr.to_string()))
            .envs(spec.env.iter().cloned())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if let Some(dir) = spec.bootstrap.parent().filter(|d| d.is_dir()) {
            cmd.current_dir(dir);
        }
        let spawned = Instant::now();
        let mut child = cmd
            .spawn()
            .with_context(|| format!("runtime api: spawn {program}"))?;
        let (log_tx, log_rx) = mpsc::unbounded_channel();
        if let Some(stdout) = child.stdout.take() {
            tokio::spawn(forward_lines(stdout, log_tx.clone()));
        }
        if let Some(stderr) = child.stderr.take() {
            tokio::spawn(forward_lines(stderr, log_tx));
        }
        Ok(Sandbox {
            child,
            spawned,
            events: events_tx,
            replies: replies_rx,
            log: log_rx,
            server,
        })
    }

    /// The output so far: until both streams end when the process is gone, else until quiet.
    async fn drain_log(&mut self, to_eof: bool) -> String {
        let mut out = String::new();
        let wait = if to_eof {
            Duration::from_secs(2)
        } else {
            LOG_QUIET
        };
        while let Ok(Some(line)) = tokio::time::timeout(wait, self.log.recv()).await {
            out.push_str(&line);
        }
        out
    }
}

pub(crate) async fn forward_lines(
    stream: impl AsyncRead + Unpin,
    tx: mpsc::UnboundedSender<String>,
) {
    let mut reader = BufReader::new(stream);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                let mut line = String::from_utf8_lossy(&buf).into_owned();
                if !line.ends_with('\n') {
                    line.push('\n');
                }
                if tx.send(line).is_err() {
                    break;
                }
            }
        }
    }
}

fn epoch_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
}

async fn next(State(api): State<Arc<Api>>) -> Response {
    let event = api.events.lock().await.recv().await;
    let Some(event) = event else {
        return (StatusCode::INTERNAL_SERVER_ERROR, "sandbox stopped").into_response();
    };
    let _ = api.replies.send(Reply::Next(event.request_id.clone()));
    let deadline = epoch_ms() + api.timeout.as_millis();
    let trace = {
        let id = uuid::Uuid::new_v4().simple().to_string();
        format!(
            "Root=1-{:08x}-{}; Parent={}; Sampled=0",
            epoch_ms() / 1000,
            &id[..24],
            &id[16..32]
        )
    };
    let mut response = (StatusCode::OK, event.payload.to_string()).into_response();
    let headers = response.headers_mut();
    let mut set = |name: &'static str, value: &str| {
        if let Ok(value) = HeaderValue::from_str(value) {
            headers.insert(HeaderName::from_static(name), value);
        }
    };
    set("content-type", "application/json");
    set("lambda-runtime-aws-request-id", &event.request_id);
    set("lambda-runtime-deadline-ms", &deadline.to_string());
    set("lambda-runtime-invoked-function-arn", &api.function_arn);
    set("lambda-runtime-trace-id", &trace);
    response
}

fn accepted() -> Response {
    (StatusCode::ACCEPTED, json!({"status": "OK"}).to_string()).into_response()
}

async fn response(State(api): State<Arc<Api>>, Path(id): Path<String>, body: Bytes) -> Response {
    let value = serde_json::from_slice(&body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()));
    let _ = api.replies.send(Reply::Response(id, value));
    accepted()
}

/// `errorType`/`errorMessage` from an error body, falling back to the
/// `Lambda-Runtime-Function-Error-Type` header.
fn error_fields(headers: &HeaderMap, body: &[u8]) -> (String, String) {
    let parsed: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let header_type = headers
        .get("lambda-runtime-function-error-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("Unhandled");
    let error_type = parsed["errorType"]
        .as_str()
        .unwrap_or(header_type)
        .to_string();
    let error_message = parsed["errorMessage"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| String::from_utf8_lossy(body).into_owned());
    (error_type, error_message)
}

async fn error(
    State(api): State<Arc<Api>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (error_type, error_message) = error_fields(&headers, &body);
    let _ = api
        .replies
        .send(Reply::Error(id, error_type, error_message));
    accepted()
}

async fn init_error(State(api): State<Arc<Api>>, headers: HeaderMap, body: Bytes) -> Response {
    let (error_type, error_message) = error_fields(&headers, &body);
    let _ = api
        .replies
        .send(Reply::InitError(error_type, error_message));
    accepted()
}
