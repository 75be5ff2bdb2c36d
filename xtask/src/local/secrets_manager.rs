//! A Secrets Manager stand-in speaking the real AWS JSON 1.1 wire protocol on 127.0.0.1, so the
//! unmodified SDK in the bootstrap reaches it through `AWS_ENDPOINT_URL_SECRETS_MANAGER`.
//! Only `GetSecretValue` is implemented; anything else gets `UnknownOperationException`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};

/// The region and account in the ARNs the emulator hands out.
const REGION: &str = "eu-west-3";
const ACCOUNT: &str = "000000000000";

/// A running emulator; dropping it stops the server.
pub struct SecretsManager {
    addr: SocketAddr,
    state: Arc<Shared>,
    server: tokio::task::JoinHandle<()>,
}

#[derive(Default)]
struct Shared {
    secrets: Mutex<HashMap<String, Secret>>,
    requests: AtomicUsize,
}

#[derive(Clone)]
struct Secret {
    arn: String,
    version_id: String,
    secret_string: String,
    created: f64,
}

impl SecretsManager {
    /// Bind 127.0.0.1 on a free port and serve on the current tokio runtime.
    pub async fn start() -> anyhow::Result<SecretsManager> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .context("secrets manager: bind 127.0.0.1")?;
        let addr = listener.local_addr()?;
        let state = Arc::new(Shared::default());
        let app = Router::new()
            .route("/", post(handle))
            .with_state(state.clone());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(SecretsManager {
            addr,
            state,
            server,
        })
    }

    /// `http://127.0.0.1:PORT`, for `AWS_ENDPOINT_URL_SECRETS_MANAGER`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Store (or replace) the secret `id` (its name) with `secret_string`. Lookups match the name
    /// or an ARN `arn:aws:secretsmanager:REGION:ACCOUNT:secret:NAME-XXXXXX`.
    pub fn put(&self, id: &str, secret_string: &str) {
        let suffix: String = uuid::Uuid::new_v4().simple().to_string()[..6].to_string();
        let secret = Secret {
            arn: format!("arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:{id}-{suffix}"),
            version_id: uuid::Uuid::new_v4().to_string(),
            secret_string: secret_string.to_string(),
            created: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_millis() as f64 / 1000.0)
                .unwrap_or(0.0),
        };
        self.state
            .secrets
            .lock()
            .unwrap()
            .insert(id.to_string(), secret);
    }

    /// Forget the secret `id`: later lookups get `ResourceNotFoundException`.
    pub fn remove(&self, id: &str) {
        self.state.secrets.lock().unwrap().remove(id);
    }

    /// The ARN of a stored secret.
    pub fn arn(&self, id: &str) -> Option<String> {
        self.state
            .secrets
            .lock()
            .unwrap()
            .get(id)
            .map(|s| s.arn.clone())
    }

    /// How many requests (of any kind) the server has answered.
    pub fn request_count(&self) -> usize {
        self.state.requests.load(Ordering::SeqCst)
    }
}

impl Drop for SecretsManager {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// The secret's name from an id that is either the name or an ARN (with or without the
/// six-character suffix AWS appends).
fn name_from_id(id: &str) -> Vec<&str> {
    match id
        .strip_prefix("arn:aws:secretsmanager:")
        .and_then(|rest| rest.split_once(":secret:"))
    {
        Some((_, name)) => {
            let mut candidates = vec![name];
            if let Some((base, suffix)) = name.rsplit_once('-')
                && suffix.len() == 6
            {
                candidates.insert(0, base);
            }
            candidates
        }
        None => vec![id],
    }
}

async fn handle(State(state): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    state.requests.fetch_add(1, Ordering::SeqCst);
    let target = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if target != "secretsmanager.GetSecretValue" {
        return aws_error(
            "UnknownOperationException",
            &format!("The operation `{target}` is not supported by this emulator."),
        );
    }
    let request: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(_) => return aws_error("SerializationException", "Malformed request body."),
    };
    let Some(id) = request.get("SecretId").and_then(Value::as_str) else {
        return aws_error("InvalidParameterException", "SecretId is required.");
    };
    let found = {
        let secrets = state.secrets.lock().unwrap();
        name_from_id(id)
            .into_iter()
            .find_map(|name| secrets.get(name).map(|s| (name.to_string(), s.clone())))
    };
    match found {
        Some((name, secret)) => json_response(
            StatusCode::OK,
            json!({
                "ARN": secret.arn,
                "Name": name,
                "VersionId": secret.version_id,
                "SecretString": secret.secret_string,
                "VersionStages": ["AWSCURRENT"],
                "CreatedDate": secret.created,
            }),
        ),
        None => aws_error(
            "ResourceNotFoundException",
            "Secrets Manager can't find the specified secret.",
        ),
    }
}

fn aws_error(error_type: &str, message: &str) -> Response {
    let mut response = json_response(
        StatusCode::BAD_REQUEST,
        json!({ "__type": error_type, "message": message }),
    );
    if let Ok(value) = HeaderValue::from_str(error_type) {
        response.headers_mut().insert("x-amzn-ErrorType", value);
    }
    response
}

fn json_response(status: StatusCode, body: Value) -> Response {
    let mut response = (status, body.to_string()).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-amz-json-1.1"),
    );
    let request_id = uuid::Uuid::new_v4().to_string();
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("x-amzn-RequestId", value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_match_names_and_arns() {
        assert_eq!(
            name_from_id("ca-a2a/db-password"),
            vec!["ca-a2a/db-password"]
        );
        assert_eq!(
            name_from_id("arn:aws:secretsmanager:eu-west-3:1:secret:ca-a2a/db-password-AbCdEf"),
            vec!["ca-a2a/db-password", "ca-a2a/db-password-AbCdEf"]
        );
    }
}
