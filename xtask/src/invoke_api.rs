//! The Lambda Invoke API on 127.0.0.1 (what `sam local start-lambda` offers, without Docker):
//! `POST /2015-03-31/functions/{name}/invocations`, answered by a [`Backend`] that runs the function,
//! with `X-Amz-Function-Error` and a base64 `X-Amz-Log-Result` tail as AWS returns them.

use std::{future::Future, net::SocketAddr, sync::Arc};

use anyhow::Context;
use axum::{
    Router,
    body::Bytes,
    extract::{Path, State},
    http::{HeaderMap, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    routing::post,
};
use base64::Engine;

/// What one invocation of the function produced.
#[derive(Clone, Debug, Default)]
pub struct Outcome {
    /// The response, or the `{"errorType", "errorMessage"}` document on failure.
    pub payload: Vec<u8>,
    /// The function reported an error (Lambda's `X-Amz-Function-Error: Unhandled`).
    pub error: bool,
    /// Everything the function wrote to stdout/stderr during the invocation.
    pub log: String,
}

/// Runs one event through the function; invocations are handed over one at a time.
pub trait Backend: Send + Sync + 'static {
    fn invoke(&self, event: Vec<u8>) -> impl Future<Output = anyhow::Result<Outcome>> + Send;
}

/// Lambda returns at most the last 4 KB of the log in `X-Amz-Log-Result`.
pub const LOG_TAIL_BYTES: usize = 4096;

/// The last [`LOG_TAIL_BYTES`] of `log`, cut on a character boundary.
pub fn log_tail(log: &str) -> &str {
    let mut start = log.len().saturating_sub(LOG_TAIL_BYTES);
    while !log.is_char_boundary(start) {
        start += 1;
    }
    &log[start..]
}

struct Shared<B> {
    function_name: String,
    backend: B,
    /// One execution environment: one event at a time, as a single Lambda instance.
    busy: tokio::sync::Mutex<()>,
}

/// A running Invoke API; dropping it stops the server.
pub struct InvokeApi {
    addr: SocketAddr,
    server: tokio::task::JoinHandle<()>,
}

impl InvokeApi {
    /// Serves `function_name` on `bind` (port 0: a free port) on the current tokio runtime.
    pub async fn start<B: Backend>(
        bind: SocketAddr,
        function_name: &str,
        backend: B,
    ) -> anyhow::Result<InvokeApi> {
        let listener = tokio::net::TcpListener::bind(bind)
            .await
            .with_context(|| format!("invoke api: bind {bind}"))?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            function_name: function_name.to_string(),
            backend,
            busy: tokio::sync::Mutex::new(()),
        });
        let app = Router::new()
            .route(
                "/2015-03-31/functions/{name}/invocations",
                post(handle::<B>),
            )
            .with_state(shared);
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(InvokeApi { addr, server })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:<port>`, for `AWS_ENDPOINT_URL_LAMBDA`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for InvokeApi {
    fn drop(&mut self) {
        self.server.abort();
    }
}

fn aws_error(status: StatusCode, kind: &str, message: &str) -> Response {
    let mut r = (
        status,
        axum::Json(serde_json::json!({"Type": "User", "message": message})),
    )
        .into_response();
    if let Ok(v) = HeaderValue::from_str(kind) {
        r.headers_mut().insert("x-amzn-errortype", v);
    }
    r
}

async fn handle<B: Backend>(
    State(shared): State<Arc<Shared<B>>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    // The SDK sends the name, a partial ARN or a full ARN: the last `:`-part names the function.
    let wanted = name
        .split(":function:")
        .nth(1)
        .map(|rest| rest.split(':').next().unwrap_or(rest))
        .unwrap_or(&name);
    if wanted != shared.function_name {
        return aws_error(
            StatusCode::NOT_FOUND,
            "ResourceNotFoundException",
            &format!("Function not found: {name}"),
        );
    }
    let header = |h: &str| headers.get(h).and_then(|v| v.to_str().ok()).unwrap_or("");
    match header("x-amz-invocation-type") {
        "" | "RequestResponse" => {}
        "DryRun" => return StatusCode::NO_CONTENT.into_response(),
        other => {
            return aws_error(
                StatusCode::BAD_REQUEST,
                "InvalidParameterValueException",
                &format!("invocation type {other} is not supported locally"),
            );
        }
    }
    let tail = header("x-amz-log-type") == "Tail";
    let event = if body.is_empty() {
        b"{}".to_vec()
    } else {
        body.to_vec()
    };
    if serde_json::from_slice::<serde_json::Value>(&event).is_err() {
        return aws_error(
            StatusCode::BAD_REQUEST,
            "InvalidRequestContentException",
            "Could not parse request body into json",
        );
    }
    let outcome = {
        let _one_at_a_time = shared.busy.lock().await;
        shared.backend.invoke(event).await
    };
    let outcome = match outcome {
        Ok(o) => o,
        Err(e) => {
            return aws_error(
                StatusCode::BAD_GATEWAY,
                "ServiceException",
                &crate::error::chain(e.as_ref()),
            );
        }
    };
    let mut r = (StatusCode::OK, outcome.payload).into_response();
    let h = r.headers_mut();
    h.insert("content-type", HeaderValue::from_static("application/json"));
    h.insert(
        "x-amz-executed-version",
        HeaderValue::from_static("$LATEST"),
    );
    if outcome.error {
        h.insert(
            "x-amz-function-error",
            HeaderValue::from_static("Unhandled"),
        );
    }
    if tail {
        let b64 = base64::engine::general_purpose::STANDARD.encode(log_tail(&outcome.log));
        if let Ok(v) = HeaderValue::from_str(&b64) {
            h.insert("x-amz-log-result", v);
        }
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_keeps_the_last_4k_on_a_char_boundary() {
        let log = format!("{}é{}", "a".repeat(10), "b".repeat(LOG_TAIL_BYTES - 1));
        let t = log_tail(&log);
        assert!(t.len() <= LOG_TAIL_BYTES);
        assert!(t.ends_with('b'));
        assert_eq!(log_tail("short"), "short");
    }
}
