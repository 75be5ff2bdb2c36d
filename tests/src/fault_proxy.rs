//! A fault-injecting AWS endpoint: an HTTP proxy on 127.0.0.1 in front of a moto server that
//! recognises each call's operation (`X-Amz-Target`, the Query `Action`, or Lambda's REST method and
//! path) and, as a test scripts it per operation, answers with AWS's own error shape, delays, hangs,
//! or rewrites fields of moto's JSON answer. Every call is counted per operation, so tests assert the
//! attempts made.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::Context;
use axum::{
    body::{Body, Bytes},
    extract::{Request, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use http_body_util::{BodyExt, Full};
use serde_json::Value;

/// An AWS error as the service sends it; the wire shape (REST-JSON, JSON 1.1, Query XML, EC2 XML)
/// follows the protocol of the service that is called.
#[derive(Clone, Debug)]
pub struct AwsError {
    pub status: u16,
    pub code: String,
    pub message: String,
}

impl AwsError {
    pub fn new(status: u16, code: &str, message: &str) -> AwsError {
        AwsError {
            status,
            code: code.to_string(),
            message: message.to_string(),
        }
    }

    /// Lambda's answer while a previous update of the function is still being applied.
    pub fn update_in_progress(function_arn: &str) -> AwsError {
        AwsError::new(
            409,
            "ResourceConflictException",
            &format!(
                "The operation cannot be performed at this time. An update is in progress for resource: {function_arn}"
            ),
        )
    }

    /// Lambda's answer to Invoke while the function is still being created.
    pub fn function_pending() -> AwsError {
        AwsError::new(
            409,
            "ResourceConflictException",
            "The operation cannot be performed at this time. The function is currently in the following state: Pending",
        )
    }

    /// Lambda's answer to CreateFunction while IAM has not propagated a new role.
    pub fn role_not_assumable() -> AwsError {
        AwsError::new(
            400,
            "InvalidParameterValueException",
            "The role defined for the function cannot be assumed by Lambda.",
        )
    }

    /// Lambda throttling (429).
    pub fn lambda_throttled() -> AwsError {
        AwsError::new(429, "TooManyRequestsException", "Rate exceeded")
    }

    /// IAM throttling.
    pub fn iam_throttled() -> AwsError {
        AwsError::new(400, "Throttling", "Rate exceeded")
    }

    /// EC2 throttling.
    pub fn ec2_throttled() -> AwsError {
        AwsError::new(503, "RequestLimitExceeded", "Request limit exceeded.")
    }

    /// A 5xx with the code the service uses for it.
    pub fn internal(code: &str) -> AwsError {
        AwsError::new(
            500,
            code,
            "We encountered an internal error. Please try again.",
        )
    }
}

/// What the proxy does with a call of a scripted operation.
#[derive(Clone, Debug)]
pub enum Fault {
    /// Answer with this error; moto never sees the call.
    Error(AwsError),
    /// Wait, then forward.
    Delay(Duration),
    /// Never answer (a client killed mid-call): moto never sees the call.
    Hang,
    /// Forward, then answer this error instead of moto's answer: the call took effect but its
    /// answer was lost (a 5xx or a timeout after the service acted), so a retry finds it done.
    Lost(AwsError),
    /// Forward, then set fields of the JSON answer, each at a JSON pointer (`/Configuration/State`).
    Rewrite(Vec<(String, Value)>),
}

struct Rule {
    operation: String,
    /// `None`: every call.
    remaining: Option<usize>,
    fault: Fault,
}

/// One call as the proxy saw it.
#[derive(Clone, Debug)]
pub struct Call {
    pub at: Duration,
    pub operation: String,
    /// `forwarded`, `forwarded+rewritten`, `hang`, or the error code answered.
    pub outcome: String,
}

#[derive(Default)]
struct Script {
    rules: Vec<Rule>,
    calls: Vec<Call>,
}

#[derive(Clone)]
struct Shared {
    upstream: SocketAddr,
    started: Instant,
    script: Arc<Mutex<Script>>,
}

/// The proxy; stops when dropped.
pub struct FaultProxy {
    pub endpoint: String,
    shared: Shared,
    server: tokio::task::JoinHandle<()>,
}

impl FaultProxy {
    /// Listens on a free 127.0.0.1 port and forwards to `upstream` (`http://127.0.0.1:<port>`).
    pub async fn start(upstream: &str) -> anyhow::Result<FaultProxy> {
        let upstream: SocketAddr = upstream
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .parse()
            .with_context(|| format!("fault proxy: upstream {upstream} is not http://ip:port"))?;
        let shared = Shared {
            upstream,
            started: Instant::now(),
            script: Arc::default(),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let endpoint = format!("http://{}", listener.local_addr()?);
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(shared.clone());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(FaultProxy {
            endpoint,
            shared,
            server,
        })
    }

    /// The next `times` calls of `operation` get `fault` (`None`: every call from now on). Rules of
    /// one operation apply in the order they were added.
    pub fn inject(&self, operation: &str, times: Option<usize>, fault: Fault) {
        self.script().rules.push(Rule {
            operation: operation.to_string(),
            remaining: times,
            fault,
        });
    }

    /// The next `times` calls of `operation` answer `error`.
    pub fn fail(&self, operation: &str, times: usize, error: AwsError) {
        self.inject(operation, Some(times), Fault::Error(error));
    }

    /// Every call of `operation` answers `error` from now on.
    pub fn fail_always(&self, operation: &str, error: AwsError) {
        self.inject(operation, None, Fault::Error(error));
    }

    /// The next `times` answers to `operation` get these fields set.
    pub fn rewrite(&self, operation: &str, times: Option<usize>, fields: &[(&str, Value)]) {
        let fields = fields
            .iter()
            .map(|(p, v)| (p.to_string(), v.clone()))
            .collect();
        self.inject(operation, times, Fault::Rewrite(fields));
    }

    /// Drops every rule that has not been used up.
    pub fn clear(&self) {
        self.script().rules.clear();
    }

    /// How many calls of `operation` the proxy received (faulted or forwarded).
    pub fn calls(&self, operation: &str) -> usize {
        self.script()
            .calls
            .iter()
            .filter(|c| c.operation == operation)
            .count()
    }

    /// A point in the call log, for [`FaultProxy::calls_since`].
    pub fn mark(&self) -> usize {
        self.script().calls.len()
    }

    /// How many calls of `operation` came after `mark`.
    pub fn calls_since(&self, mark: usize, operation: &str) -> usize {
        self.script().calls[mark..]
            .iter()
            .filter(|c| c.operation == operation)
            .count()
    }

    /// Every call so far, in order.
    pub fn log(&self) -> Vec<Call> {
        self.script().calls.clone()
    }

    /// Calls per operation, for printing.
    pub fn counts(&self) -> BTreeMap<String, usize> {
        let mut m = BTreeMap::new();
        for c in &self.script().calls {
            *m.entry(c.operation.clone()).or_default() += 1;
        }
        m
    }

    /// Waits until `operation` has been called `n` times (at most 60 s).
    pub async fn wait_for(&self, operation: &str, n: usize) -> anyhow::Result<()> {
        let started = Instant::now();
        while self.calls(operation) < n {
            anyhow::ensure!(
                started.elapsed() < Duration::from_secs(60),
                "fault proxy: {operation} was not called {n} times within 60 s"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok(())
    }

    fn script(&self) -> std::sync::MutexGuard<'_, Script> {
        self.shared.script.lock().unwrap()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// The AWS service a request is for, from its SigV4 credential scope (`.../<region>/<service>/aws4_request`).
fn service(headers: &HeaderMap) -> String {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|auth| auth.split("Credential=").nth(1))
        .and_then(|cred| cred.split(['/', ',']).nth(3))
        .unwrap_or("")
        .to_string()
}

/// The operation's name: `X-Amz-Target`'s suffix, the Query `Action`, or Lambda's REST route.
fn operation(method: &str, path: &str, headers: &HeaderMap, body: &[u8]) -> String {
    if let Some(target) = headers.get("x-amz-target").and_then(|v| v.to_str().ok()) {
        return target.rsplit('.').next().unwrap_or(target).to_string();
    }
    if let Some(action) = std::str::from_utf8(body).ok().and_then(|b| {
        b.split('&')
            .find_map(|kv| kv.strip_prefix("Action="))
            .map(str::to_string)
    }) {
        return action;
    }
    lambda_operation(method, path).unwrap_or_else(|| format!("{method} {path}"))
}

/// Lambda's REST routes (API version 2015-03-31) the xtask uses.
fn lambda_operation(method: &str, path: &str) -> Option<String> {
    let rest = path.strip_prefix("/2015-03-31/functions")?;
    let parts: Vec<&str> = rest.split('/').filter(|p| !p.is_empty()).collect();
    let op = match (method, parts.as_slice()) {
        ("POST", []) => "CreateFunction",
        ("GET", []) => "ListFunctions",
        ("GET", [_]) => "GetFunction",
        ("DELETE", [_]) => "DeleteFunction",
        ("GET", [_, "configuration"]) => "GetFunctionConfiguration",
        ("PUT", [_, "configuration"]) => "UpdateFunctionConfiguration",
        ("PUT", [_, "code"]) => "UpdateFunctionCode",
        ("POST", [_, "invocations"]) => "Invoke",
        _ => return None,
    };
    Some(op.to_string())
}

async fn handle(State(shared): State<Shared>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let body = match axum::body::to_bytes(body, usize::MAX).await {
        Ok(b) => b,
        Err(e) => return (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    };
    let path = parts.uri.path().to_string();
    let op = operation(parts.method.as_str(), &path, &parts.headers, &body);
    let svc = service(&parts.headers);
    let fault = {
        let mut script = shared.script.lock().unwrap();
        let fault = script
            .rules
            .iter_mut()
            .find(|r| r.operation == op && r.remaining != Some(0))
            .map(|r| {
                if let Some(n) = &mut r.remaining {
                    *n -= 1;
                }
                r.fault.clone()
            });
        let outcome = match &fault {
            Some(Fault::Error(e)) => e.code.clone(),
            Some(Fault::Lost(e)) => format!("forwarded, answered {}", e.code),
            Some(Fault::Hang) => "hang".to_string(),
            Some(Fault::Rewrite(_)) => "forwarded+rewritten".to_string(),
            Some(Fault::Delay(d)) => format!("forwarded after {} ms", d.as_millis()),
            None => "forwarded".to_string(),
        };
        script.calls.push(Call {
            at: shared.started.elapsed(),
            operation: op.clone(),
            outcome,
        });
        fault
    };
    match fault {
        Some(Fault::Error(e)) => error_response(&svc, &parts.headers, &e),
        Some(Fault::Hang) => std::future::pending().await,
        Some(Fault::Lost(e)) => match forward(&shared, parts.clone(), body, &[]).await {
            Ok(_) => error_response(&svc, &parts.headers, &e),
            Err(err) => Err(err),
        },
        Some(Fault::Delay(d)) => {
            tokio::time::sleep(d).await;
            forward(&shared, parts, body, &[]).await
        }
        Some(Fault::Rewrite(fields)) => forward(&shared, parts, body, &fields).await,
        None => forward(&shared, parts, body, &[]).await,
    }
    .unwrap_or_else(|e| (StatusCode::BAD_GATEWAY, format!("fault proxy: {e:#}")).into_response())
}

/// The error as the service's protocol puts it on the wire; the SDK parses each of these shapes.
fn error_response(svc: &str, headers: &HeaderMap, e: &AwsError) -> anyhow::Result<Response> {
    let request_id = uuid_like();
    let status = StatusCode::from_u16(e.status)?;
    let (content_type, body, error_type_header) = if headers.contains_key("x-amz-target") {
        // JSON 1.0 / 1.1 (Secrets Manager, CloudWatch Logs).
        let body = serde_json::json!({"__type": e.code, "message": e.message});
        ("application/x-amz-json-1.1", body.to_string(), false)
    } else if svc == "lambda" {
        // REST-JSON: the code travels in `x-amzn-ErrorType`; `Type` says whose fault it is.
        let kind = if e.status >= 500 { "Service" } else { "User" };
        let body = serde_json::json!({"Type": kind, "message": e.message});
        ("application/json", body.to_string(), true)
    } else if svc == "ec2" {
        let body = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error><Code>{}</Code><Message>{}</Message></Error></Errors><RequestID>{request_id}</RequestID></Response>",
            xml_escape(&e.code),
            xml_escape(&e.message)
        );
        ("text/xml;charset=UTF-8", body, false)
    } else {
        // Query protocol (IAM, RDS).
        let kind = if e.status >= 500 {
            "Receiver"
        } else {
            "Sender"
        };
        let ns = match svc {
            "iam" => " xmlns=\"https://iam.amazonaws.com/doc/2010-05-08/\"",
            "rds" => " xmlns=\"http://rds.amazonaws.com/doc/2014-10-31/\"",
            _ => "",
        };
        let body = format!(
            "<ErrorResponse{ns}>\n  <Error>\n    <Type>{kind}</Type>\n    <Code>{}</Code>\n    <Message>{}</Message>\n  </Error>\n  <RequestId>{request_id}</RequestId>\n</ErrorResponse>\n",
            xml_escape(&e.code),
            xml_escape(&e.message)
        );
        ("text/xml", body, false)
    };
    let mut resp = (status, body).into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert("x-amzn-requestid", HeaderValue::from_str(&request_id)?);
    if error_type_header {
        h.insert("x-amzn-errortype", HeaderValue::from_str(&e.code)?);
    }
    Ok(resp)
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn uuid_like() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(1);
    format!(
        "f0a17000-0000-4000-8000-{:012x}",
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Sends the request to moto as is (one connection per call) and returns its answer, with `fields`
/// set in its JSON body.
async fn forward(
    shared: &Shared,
    parts: axum::http::request::Parts,
    body: Bytes,
    fields: &[(String, Value)],
) -> anyhow::Result<Response> {
    let stream = tokio::net::TcpStream::connect(shared.upstream).await?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let mut req = hyper::Request::builder()
        .method(parts.method)
        .uri(
            parts
                .uri
                .path_and_query()
                .map(|p| p.as_str())
                .unwrap_or("/"),
        )
        .body(Full::new(body))?;
    *req.headers_mut() = parts.headers;
    let resp = sender.send_request(req).await?;
    let (mut parts, body) = resp.into_parts();
    let mut body = body.collect().await?.to_bytes();
    if !fields.is_empty() {
        let mut v: Value = serde_json::from_slice(&body)
            .context("fault proxy: rewrite asked for, but the answer is not JSON")?;
        for (pointer, value) in fields {
            set_pointer(&mut v, pointer, value.clone())?;
        }
        body = Bytes::from(serde_json::to_vec(&v)?);
        parts.headers.remove(header::CONTENT_LENGTH);
        parts.headers.remove(header::TRANSFER_ENCODING);
    }
    Ok(Response::from_parts(parts, Body::from(body)))
}

/// Sets (inserting when missing) the field at a JSON pointer whose parent is an object.
fn set_pointer(v: &mut Value, pointer: &str, value: Value) -> anyhow::Result<()> {
    let (parent, key) = pointer
        .rsplit_once('/')
        .with_context(|| format!("fault proxy: {pointer} is not a JSON pointer"))?;
    let obj = v
        .pointer_mut(parent)
        .and_then(Value::as_object_mut)
        .with_context(|| format!("fault proxy: no object at {parent} in the answer"))?;
    obj.insert(key.to_string(), value);
    Ok(())
}

/// A GET to moto outside the SDK (the full JSON of an answer, unparsed), signed only enough for moto
/// to know service and region.
pub async fn raw_get(upstream: &str, service: &str, path: &str) -> anyhow::Result<Value> {
    raw_request(upstream, "GET", service, path, None).await
}

/// Tells the moto server at `upstream` to answer Lambda's Invoke itself (it echoes the event)
/// instead of running the function in Docker.
pub async fn moto_lambda_without_docker(upstream: &str) -> anyhow::Result<()> {
    let body = serde_json::json!({"lambda": {"use_docker": false}});
    raw_request(upstream, "POST", "moto", "/moto-api/config", Some(body)).await?;
    Ok(())
}

async fn raw_request(
    upstream: &str,
    method: &str,
    service: &str,
    path: &str,
    body: Option<Value>,
) -> anyhow::Result<Value> {
    let addr: SocketAddr = upstream.trim_start_matches("http://").parse()?;
    let stream = tokio::net::TcpStream::connect(addr).await?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let req = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header(header::HOST, addr.to_string())
        .header(header::CONTENT_TYPE, "application/json")
        .header(
            header::AUTHORIZATION,
            format!(
                "AWS4-HMAC-SHA256 Credential=testing/20260101/eu-west-3/{service}/aws4_request, SignedHeaders=host, Signature=0"
            ),
        )
        .body(Full::new(Bytes::from(body)))?;
    let resp = sender.send_request(req).await?;
    let status = resp.status();
    let body = resp.into_body().collect().await?.to_bytes();
    anyhow::ensure!(
        status.is_success(),
        "{method} {path}: {status}: {}",
        String::from_utf8_lossy(&body)
    );
    Ok(serde_json::from_slice(&body)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_are_named_as_aws_names_them() {
        let mut h = HeaderMap::new();
        assert_eq!(
            operation("PUT", "/2015-03-31/functions/f/configuration", &h, b""),
            "UpdateFunctionConfiguration"
        );
        assert_eq!(
            operation("DELETE", "/2015-03-31/functions/f", &h, b""),
            "DeleteFunction"
        );
        assert_eq!(
            operation("POST", "/", &h, b"Action=CreateRole&Version=2010-05-08"),
            "CreateRole"
        );
        h.insert(
            "x-amz-target",
            HeaderValue::from_static("Logs_20140328.DeleteLogGroup"),
        );
        assert_eq!(operation("POST", "/", &h, b"{}"), "DeleteLogGroup");
        let mut h = HeaderMap::new();
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static(
                "AWS4-HMAC-SHA256 Credential=testing/20260101/eu-west-3/iam/aws4_request, SignedHeaders=host, Signature=x",
            ),
        );
        assert_eq!(service(&h), "iam");
    }
}
