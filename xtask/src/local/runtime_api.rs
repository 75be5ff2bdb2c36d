//! The Lambda Runtime API on 127.0.0.1, and the sandbox around one bootstrap process: it spawns
//! the bootstrap (`local::bootstrap`), hands it events, enforces the timeout (kill +
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

use std::ffi::OsString;
use std::path::PathBuf;
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
use tokio::sync::mpsc;

use super::bootstrap::{self, exit_error, lambda_env, vm_hwm_kb};
pub use super::invocation::{FunctionSpec, INIT_LIMIT, Invocation, Outcome};

/// After a response, keep reading the child's output until it is quiet this long.
const LOG_QUIET: Duration = Duration::from_millis(15);

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

        let (program, args) = match &spec.wrapper {
            Some(wrapper) if !wrapper.is_empty() => {
                let args = wrapper[1..].iter().map(OsString::from);
                let args = args.chain([spec.bootstrap.clone().into_os_string()]);
                (PathBuf::from(&wrapper[0]), args.collect())
            }
            _ => (spec.bootstrap.clone(), Vec::new()),
        };
        let spawned = Instant::now();
        let env = lambda_env(spec, &addr.to_string());
        let (child, log_rx) = bootstrap::spawn(spec, &program, &args, env)
            .with_context(|| format!("runtime api: spawn {}", program.display()))?;
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
