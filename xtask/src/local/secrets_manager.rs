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

use super::tls::RunCertificates;

/// The region and account in the ARNs the emulator hands out.
const REGION: &str = "eu-west-3";
const ACCOUNT: &str = "000000000000";

/// A running emulator; dropping it stops the server.
pub struct SecretsManager {
    addr: SocketAddr,
    /// `https://localhost:PORT` when serving TLS, else `http://127.0.0.1:PORT`.
    endpoint: String,
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
        let app = router(&state);
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(SecretsManager {
            addr,
            endpoint: format!("http://{addr}"),
            state,
            server,
        })
    }

    /// Same protocol over HTTPS at `https://localhost:PORT`, with the server certificate of `certs`
    /// (SAN `localhost`): what a client that does not trust `certs.ca_pem` sees of a real endpoint
    /// behind an intercepting proxy or with the wrong CA bundle.
    pub async fn start_tls(certs: &RunCertificates) -> anyhow::Result<SecretsManager> {
        use tokio_rustls::rustls::{
            self,
            pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject},
        };
        let chain = CertificateDer::pem_slice_iter(certs.server_cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .context("secrets manager: server certificate PEM")?;
        let key = PrivateKeyDer::from_pem_slice(certs.server_key_pem.as_bytes())
            .context("secrets manager: server key PEM")?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .context("secrets manager: TLS server config")?;
        let tcp = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .context("secrets manager: bind 127.0.0.1")?;
        let addr = tcp.local_addr()?;
        let listener = TlsListener {
            tcp,
            acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
        };
        let state = Arc::new(Shared::default());
        let app = router(&state);
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(SecretsManager {
            addr,
            endpoint: format!("https://{}:{}", super::tls::SERVER_NAME, addr.port()),
            state,
            server,
        })
    }

    /// `http://127.0.0.1:PORT` (or `https://localhost:PORT`), for `AWS_ENDPOINT_URL_SECRETS_MANAGER`.
    pub fn endpoint(&self) -> String {
        self.endpoint.clone()
    }

    /// The local address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
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

fn router(state: &Arc<Shared>) -> Router {
    Router::new()
        .route("/", post(handle))
        .with_state(state.clone())
}

/// TCP accept plus a TLS handshake; connections whose handshake fails (a client that rejects the
/// certificate) are dropped and the next one is awaited.
struct TlsListener {
    tcp: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Ok((tcp, peer)) = self.tcp.accept().await else {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            };
            // Bounded, so a silent client cannot stall the (sequential) accept loop.
            let handshake = self.acceptor.accept(tcp);
            if let Ok(Ok(tls)) =
                tokio::time::timeout(std::time::Duration::from_secs(5), handshake).await
            {
                return (tls, peer);
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.tcp.local_addr()
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
