//! IAM database authentication: the RDS auth token, signed here with the execution role's
//! credentials (SigV4 query-string presigning, service `rds-db`, valid 15 minutes) and used as the
//! password. No network call: the token is a presigned URL the server checks on its side.
//!
//! The token is a credential for 15 minutes: it lives only in a [`Password`] (whose `Debug` is
//! redacted) and is never logged, reported or put in an error.

use std::{fmt, time::Duration, time::SystemTime};

use aws_sigv4::http_request::{
    SignableBody, SignableRequest, SignatureLocation, SigningSettings, sign,
};
use aws_sigv4::sign::v4;

use crate::{error::InitError, session::secret::Password};

/// The service name RDS checks tokens for.
pub const SERVICE: &str = "rds-db";
/// How long a token is valid: the longest RDS accepts.
pub const TOKEN_LIFETIME: Duration = Duration::from_secs(900);

/// The execution role's credentials, as Lambda puts them in the environment.
#[derive(Clone)]
pub struct Credentials {
    access_key_id: String,
    secret_access_key: String,
    session_token: Option<String>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"***")
            .field("session_token", &self.session_token.as_ref().map(|_| "***"))
            .finish()
    }
}

impl Credentials {
    /// `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and (optional) `AWS_SESSION_TOKEN` from the process
    /// environment.
    pub fn from_env() -> Result<Credentials, InitError> {
        Credentials::from_lookup(|name| std::env::var(name).ok())
    }

    /// The same through `lookup`. Missing credentials are a `Config` error naming the variables.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Credentials, InitError> {
        let var = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        match (var("AWS_ACCESS_KEY_ID"), var("AWS_SECRET_ACCESS_KEY")) {
            (Some(access_key_id), Some(secret_access_key)) => Ok(Credentials {
                access_key_id,
                secret_access_key,
                session_token: var("AWS_SESSION_TOKEN"),
            }),
            (key, _) => Err(InitError::Config(format!(
                "DB_AUTH=iam: no AWS credentials to sign the database token with ({} not set); \
                 Lambda sets them from the function's execution role, locally export them",
                if key.is_none() {
                    "AWS_ACCESS_KEY_ID"
                } else {
                    "AWS_SECRET_ACCESS_KEY"
                }
            ))),
        }
    }
}

/// RFC 3986 percent-encoding of everything but the unreserved characters (what SigV4 expects).
fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(byte as char)
            }
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

/// The RDS auth token for `user` at `host:port`, signed at `now` for `region`:
/// `host:port/?Action=connect&DBUser=user&X-Amz-…&X-Amz-Signature=…` (the presigned URL without
/// its scheme), exactly what `aws rds generate-db-auth-token` prints.
pub fn token(
    host: &str,
    port: u16,
    user: &str,
    region: &str,
    credentials: &Credentials,
    now: SystemTime,
) -> Result<Password, InitError> {
    let identity: aws_smithy_runtime_api::client::identity::Identity =
        aws_sdk_secretsmanager::config::Credentials::new(
            &credentials.access_key_id,
            &credentials.secret_access_key,
            credentials.session_token.clone(),
            None,
            "environment",
        )
        .into();
    let mut settings = SigningSettings::default();
    settings.expires_in = Some(TOKEN_LIFETIME);
    settings.signature_location = SignatureLocation::QueryParams;
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(SERVICE)
        .time(now)
        .settings(settings)
        .build()
        .map_err(|e| InitError::Config(format!("DB_AUTH=iam: signing the token: {e}")))?
        .into();
    let url = format!(
        "https://{host}:{port}/?Action=connect&DBUser={}",
        encode(user)
    );
    let request = SignableRequest::new("GET", &url, std::iter::empty(), SignableBody::Bytes(&[]))
        .and_then(|request| sign(request, &params))
        // The signer's errors describe the request's shape, never the credentials.
        .map_err(|e| InitError::Config(format!("DB_AUTH=iam: signing the token: {e}")))?;
    let (instructions, _signature) = request.into_parts();
    let mut token = url["https://".len()..].to_string();
    for (name, value) in instructions.params() {
        token.push('&');
        token.push_str(&encode(name));
        token.push('=');
        token.push_str(&encode(value));
    }
    Ok(Password::new(token))
}

/// The `Auth` error for a token the server refused, with the three usual causes and their fixes.
pub fn refused(err: InitError, user: &str) -> InitError {
    match err {
        InitError::Auth(message) => InitError::Auth(format!(
            "{message}: the server refused the IAM token; check that the user has the rds_iam role \
             (GRANT rds_iam TO {user}), that IAM database authentication is enabled on the instance \
             (aws rds modify-db-instance --enable-iam-database-authentication), and that the \
             function's role may rds-db:connect as {user} (arn:aws:rds-db:REGION:ACCOUNT:dbuser:DbiResourceId/{user})"
        )),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn credentials() -> Credentials {
        Credentials::from_lookup(|name| match name {
            "AWS_ACCESS_KEY_ID" => Some("AKIDEXAMPLE".to_string()),
            "AWS_SECRET_ACCESS_KEY" => Some("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".to_string()),
            "AWS_SESSION_TOKEN" => Some("session/token+1".to_string()),
            _ => None,
        })
        .unwrap()
    }

    #[test]
    fn token_is_the_presigned_connect_url() {
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let token = token(
            "db.example",
            5432,
            "init_fn_migrator",
            "eu-west-3",
            &credentials(),
            at,
        )
        .unwrap();
        let token = token.expose();
        assert!(
            token.starts_with("db.example:5432/?Action=connect&DBUser=init_fn_migrator&"),
            "{token}"
        );
        for part in [
            "X-Amz-Algorithm=AWS4-HMAC-SHA256",
            "X-Amz-Credential=AKIDEXAMPLE%2F20231114%2Feu-west-3%2Frds-db%2Faws4_request",
            "X-Amz-Date=20231114T221320Z",
            "X-Amz-Expires=900",
            "X-Amz-SignedHeaders=host",
            "X-Amz-Security-Token=session%2Ftoken%2B1",
            "X-Amz-Signature=",
        ] {
            assert!(token.contains(part), "{part} missing in {token}");
        }
        assert!(!token.contains("wJalrXUtnFEMI"));
    }

    #[test]
    fn missing_credentials_are_a_named_config_error() {
        let err = Credentials::from_lookup(|_| None).unwrap_err();
        assert_eq!(err.error_type(), "Config");
        assert!(err.to_string().contains("AWS_ACCESS_KEY_ID"), "{err}");
        let err = Credentials::from_lookup(|name| {
            (name == "AWS_ACCESS_KEY_ID").then(|| "AKID".to_string())
        })
        .unwrap_err();
        assert!(err.to_string().contains("AWS_SECRET_ACCESS_KEY"), "{err}");
    }

    #[test]
    fn credentials_debug_is_redacted() {
        let text = format!("{:?}", credentials());
        assert!(!text.contains("wJalrXUtnFEMI") && !text.contains("session/token"));
    }
}
