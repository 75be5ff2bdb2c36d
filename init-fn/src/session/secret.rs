//! Reads the database password from Secrets Manager: the plain-string form the original used, or the
//! JSON an RDS-managed secret holds (`password`, and `username`/`host`/`port`/`dbname` when present).

use std::{fmt, time::Duration};

use aws_sdk_secretsmanager::{
    Client,
    error::{ProvideErrorMetadata, SdkError},
    operation::RequestId,
};

use crate::error::{InitError, chain, one_line};

/// A password that never prints.
#[derive(Clone)]
pub struct Password(String);

impl Password {
    /// Wraps a credential (a password, an IAM token) so that it never prints.
    pub fn new(text: String) -> Password {
        Password(text)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(***)")
    }
}

/// What the secret provides.
#[derive(Debug, Clone)]
pub struct Secret {
    pub password: Password,
    pub username: Option<String>,
    pub host: Option<String>,
    pub port: Option<u16>,
    pub dbname: Option<String>,
}

/// An HTTPS client for the AWS SDK (rustls with ring: no C toolchain needed when cross-compiling).
pub fn https_client() -> aws_sdk_secretsmanager::config::SharedHttpClient {
    use aws_smithy_http_client::tls;
    aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https()
}

/// SDK timeouts: an unreachable endpoint fails in seconds, not at the Lambda timeout.
pub fn timeouts() -> aws_sdk_secretsmanager::config::timeout::TimeoutConfig {
    aws_sdk_secretsmanager::config::timeout::TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(3))
        .operation_attempt_timeout(Duration::from_secs(5))
        .operation_timeout(Duration::from_secs(12))
        .build()
}

/// The production client, configured from what Lambda puts in the environment: `AWS_REGION`, the
/// execution role's `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` / `AWS_SESSION_TOKEN`, and
/// `AWS_ENDPOINT_URL_SECRETS_MANAGER` (or `AWS_ENDPOINT_URL`) for local runs. Reading these directly
/// instead of through aws-config keeps STS/SSO/IMDS code out of the binary (zip size, cold start).
pub fn client_from_env() -> Client {
    client_from_lookup(|name| std::env::var(name).ok())
}

pub fn client_from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Client {
    use aws_sdk_secretsmanager::config::{BehaviorVersion, Credentials, Region};
    let var = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
    let region = var("AWS_REGION")
        .or_else(|| var("AWS_DEFAULT_REGION"))
        .unwrap_or_else(|| "eu-west-3".to_string());
    let mut config = aws_sdk_secretsmanager::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(region))
        .http_client(https_client())
        .timeout_config(timeouts());
    if let (Some(key), Some(secret)) = (var("AWS_ACCESS_KEY_ID"), var("AWS_SECRET_ACCESS_KEY")) {
        config = config.credentials_provider(Credentials::new(
            key,
            secret,
            var("AWS_SESSION_TOKEN"),
            None,
            "environment",
        ));
    }
    if let Some(endpoint) =
        var("AWS_ENDPOINT_URL_SECRETS_MANAGER").or_else(|| var("AWS_ENDPOINT_URL"))
    {
        config = config.endpoint_url(endpoint);
    }
    Client::from_conf(config.build())
}

pub async fn fetch(client: &Client, secret_id: &str) -> Result<Secret, InitError> {
    let output = client
        .get_secret_value()
        .secret_id(secret_id)
        .send()
        .await
        .map_err(|err| {
            InitError::SecretFetch(format!("GetSecretValue {secret_id}: {}", describe(&err)))
        })?;
    let Some(text) = output.secret_string() else {
        return Err(InitError::SecretFormat(format!(
            "secret {secret_id} has no SecretString (binary secrets are not supported)"
        )));
    };
    parse(secret_id, text)
}

/// One line for a failed call: the service's error code, message and request id when the service
/// answered, else the transport's chain of causes (`dispatch failure: io error: ...`).
fn describe<E, R>(err: &SdkError<E, R>) -> String
where
    E: ProvideErrorMetadata + RequestId + std::error::Error + 'static,
    R: fmt::Debug + 'static,
{
    let (text, request_id) = match err.as_service_error() {
        Some(service) => {
            let text = match (service.code(), service.message()) {
                (Some(code), Some(message)) => format!("{code}: {message}"),
                (Some(code), None) => code.to_string(),
                _ => chain(service),
            };
            (text, service.request_id())
        }
        None => (chain(err), None),
    };
    match request_id {
        Some(id) => one_line(&format!("{text} (request id {id})")),
        None => one_line(&text),
    }
}

/// Interprets a SecretString. Error messages describe the shape, never the content.
pub fn parse(secret_id: &str, text: &str) -> Result<Secret, InitError> {
    if text.trim().is_empty() {
        return Err(InitError::SecretFormat(format!(
            "secret {secret_id} is empty"
        )));
    }
    let json = match serde_json::from_str::<serde_json::Value>(text) {
        Ok(serde_json::Value::Object(map)) => map,
        // Anything that is not a JSON object is the password itself, as the original stored it.
        _ => {
            return Ok(Secret {
                password: Password(text.to_string()),
                username: None,
                host: None,
                port: None,
                dbname: None,
            });
        }
    };
    let field = |name: &str| json.get(name).and_then(|v| v.as_str()).map(str::to_string);
    let password = match json.get("password") {
        Some(serde_json::Value::String(p)) if !p.is_empty() => Password(p.clone()),
        Some(serde_json::Value::String(_)) => {
            return Err(InitError::SecretFormat(format!(
                "secret {secret_id} is JSON with an empty \"password\""
            )));
        }
        Some(_) => {
            return Err(InitError::SecretFormat(format!(
                "secret {secret_id} is JSON whose \"password\" is not a string"
            )));
        }
        None => {
            return Err(InitError::SecretFormat(format!(
                "secret {secret_id} is JSON without a \"password\" field"
            )));
        }
    };
    let port = match json.get("port") {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::Number(n)) => n.as_u64().and_then(|p| u16::try_from(p).ok()),
        Some(serde_json::Value::String(s)) => s.parse().ok(),
        Some(_) => None,
    };
    Ok(Secret {
        password,
        username: field("username"),
        host: field("host"),
        port,
        dbname: field("dbname"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_string_is_the_password() {
        let s = parse("id", "s3cr3t{not json").unwrap();
        assert_eq!(s.password.expose(), "s3cr3t{not json");
        assert!(s.username.is_none());
    }

    #[test]
    fn rds_managed_json() {
        let s = parse(
            "id",
            r#"{"username":"admin","password":"p@ss","host":"h","port":5433,"dbname":"d","engine":"postgres"}"#,
        )
        .unwrap();
        assert_eq!(s.password.expose(), "p@ss");
        assert_eq!(s.username.as_deref(), Some("admin"));
        assert_eq!(s.host.as_deref(), Some("h"));
        assert_eq!(s.port, Some(5433));
        assert_eq!(s.dbname.as_deref(), Some("d"));
    }

    #[test]
    fn bad_shapes_are_secret_format_and_never_echo_content() {
        for text in [
            "",
            "   ",
            r#"{"username":"u","pw":"hunter2"}"#,
            r#"{"password":""}"#,
            r#"{"password":42}"#,
        ] {
            let err = parse("id", text).unwrap_err();
            assert_eq!(err.error_type(), "SecretFormat", "{text}");
            assert!(!err.to_string().contains("hunter2"));
        }
    }

    #[test]
    fn password_debug_is_redacted() {
        let s = parse("id", "hunter2").unwrap();
        assert!(!format!("{s:?}").contains("hunter2"));
    }
}
