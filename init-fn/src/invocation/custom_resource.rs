//! The answer to a CloudFormation custom-resource request: one PUT of `{Status, Reason,
//! PhysicalResourceId, StackId, RequestId, LogicalResourceId, Data}` (at most 4096 bytes) to the
//! request's presigned S3 `ResponseURL`, retried on 5xx, timeouts and lost connections while the
//! invocation's deadline allows. The URL's query signs the PUT: it is a credential and never printed.

use std::{
    sync::OnceLock,
    time::{Duration, SystemTime},
};

use aws_smithy_http_client::{Connector, tls};
use aws_smithy_runtime_api::client::http::HttpConnector;
use aws_smithy_types::body::SdkBody;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::{
    deadline::Deadline,
    engine::report::{MigrationState, Report},
    error::{InitError, chain, one_line},
};

/// Kept free of work before the invocation's deadline so the answer can still be sent.
pub const ANSWER_WINDOW: Duration = Duration::from_secs(2);
/// Kept free after the answer so the invocation's own result still reaches Lambda.
const RETURN_RESERVE: Duration = Duration::from_millis(250);
/// CloudFormation refuses a larger response.
pub const MAX_BODY: usize = 4096;
/// Attempts of the PUT, the first included.
const MAX_ATTEMPTS: u32 = 5;
/// Pause after the first failed attempt; doubles after each further one.
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
/// One attempt's limit (S3 answers a PUT of 4 KiB in milliseconds).
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);

/// Where and to what request the answer goes, read leniently from the event so that even a bad
/// request is answered.
#[derive(Clone)]
pub struct Reply {
    url: String,
    stack_id: String,
    request_id: String,
    logical_resource_id: String,
    /// Echoed when CloudFormation sent one (Update, Delete): a changed id would replace the resource.
    physical_resource_id: Option<String>,
}

impl std::fmt::Debug for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reply")
            .field("url", &without_query(&self.url))
            .field("stack_id", &self.stack_id)
            .field("request_id", &self.request_id)
            .field("logical_resource_id", &self.logical_resource_id)
            .field("physical_resource_id", &self.physical_resource_id)
            .finish()
    }
}

impl Reply {
    /// `None` when `ResponseURL` is not an http(s) URL: then nothing can be answered.
    pub fn from_event(event: &Map<String, Value>) -> Option<Reply> {
        let text = |key: &str| event.get(key).and_then(Value::as_str).map(str::to_string);
        let url = text("ResponseURL")?;
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            return None;
        }
        Some(Reply {
            url,
            stack_id: text("StackId").unwrap_or_default(),
            request_id: text("RequestId").unwrap_or_default(),
            logical_resource_id: text("LogicalResourceId").unwrap_or_default(),
            physical_resource_id: text("PhysicalResourceId").filter(|id| !id.is_empty()),
        })
    }
}

/// What the invocation came to, as the answer reports it.
pub enum Outcome<'a> {
    Ran(&'a Report),
    /// A Delete: nothing was run.
    Kept,
    Failed(&'a InitError),
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct Answer<'a> {
    status: &'static str,
    reason: String,
    physical_resource_id: String,
    stack_id: &'a str,
    request_id: &'a str,
    logical_resource_id: &'a str,
    data: Data,
}

/// What `Fn::GetAtt` reads; strings, as CloudFormation passes attributes on.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct Data {
    /// Versions this run applied (or adopted), comma-separated; empty when none.
    #[serde(skip_serializing_if = "Option::is_none")]
    applied_versions: Option<String>,
    /// The highest version in the ledger after the run; `0` when none.
    #[serde(skip_serializing_if = "Option::is_none")]
    latest_version: Option<String>,
    database: String,
}

/// The JSON body of the answer, with `Reason` cut so the whole fits [`MAX_BODY`].
pub fn body(reply: &Reply, outcome: &Outcome<'_>, database: &str) -> Vec<u8> {
    let (status, reason, data) = match outcome {
        Outcome::Ran(report) => {
            let applied: Vec<String> = report
                .migrations
                .iter()
                .filter(|m| matches!(m.state, MigrationState::Applied | MigrationState::Adopted))
                .map(|m| m.version.to_string())
                .collect();
            let latest = report
                .migrations
                .iter()
                .filter(|m| m.state != MigrationState::Pending)
                .map(|m| m.version)
                .max()
                .unwrap_or(0);
            let action = format!("{:?}", report.action).to_lowercase();
            let reason = format!(
                "{action} on {}: {} migration(s) applied, latest version {latest}",
                report.database,
                applied.len()
            );
            let data = Data {
                applied_versions: Some(applied.join(",")),
                latest_version: Some(latest.to_string()),
                database: report.database.clone(),
            };
            ("SUCCESS", reason, data)
        }
        Outcome::Kept => (
            "SUCCESS",
            "Delete: the schema is kept (a stack deletion never drops it); nothing was run"
                .to_string(),
            Data {
                applied_versions: None,
                latest_version: None,
                database: database.to_string(),
            },
        ),
        Outcome::Failed(err) => (
            "FAILED",
            format!("{}: {}", err.error_type(), err.one_line()),
            Data {
                applied_versions: None,
                latest_version: None,
                database: database.to_string(),
            },
        ),
    };
    let mut answer = Answer {
        status,
        reason,
        physical_resource_id: reply
            .physical_resource_id
            .clone()
            .unwrap_or_else(|| physical_resource_id(database)),
        stack_id: &reply.stack_id,
        request_id: &reply.request_id,
        logical_resource_id: &reply.logical_resource_id,
        data,
    };
    let bytes = serde_json::to_vec(&answer).expect("the answer serializes");
    if bytes.len() <= MAX_BODY {
        return bytes;
    }
    // Keep the longest start of the reason whose escaped JSON fits beside the rest, then an ellipsis.
    let rest = bytes.len() - escaped_len(&answer.reason);
    let budget = MAX_BODY.saturating_sub(rest + "…".len());
    let mut used = 0;
    let keep = answer
        .reason
        .char_indices()
        .find_map(|(at, c)| {
            used += escaped_len(c.encode_utf8(&mut [0; 4]));
            (used > budget).then_some(at)
        })
        .unwrap_or(answer.reason.len());
    answer.reason.truncate(keep);
    answer.reason.push('…');
    serde_json::to_vec(&answer).expect("the answer serializes")
}

/// Bytes `text` takes inside a JSON string.
fn escaped_len(text: &str) -> usize {
    serde_json::to_string(text).map_or(text.len(), |s| s.len() - 2)
}

/// The id CloudFormation tracks the resource by: one per database, the same on every run.
pub fn physical_resource_id(database: &str) -> String {
    format!("init-fn:{database}")
}

/// The HTTPS client of the answers, built on the first custom-resource request (cold starts of other
/// callers do not load the trust store twice). The SDK's own connector: no further TLS stack.
#[derive(Default)]
pub struct Client(OnceLock<Connector>);

impl Client {
    fn connector(&self) -> &Connector {
        self.0.get_or_init(|| {
            Connector::builder()
                .tls_provider(tls::Provider::Rustls(
                    tls::rustls_provider::CryptoMode::Ring,
                ))
                .build()
        })
    }
}

/// Why an attempt did not deliver the answer.
struct Refused {
    text: String,
    /// 5xx, a timeout, a lost connection: another attempt may succeed.
    transient: bool,
}

/// PUTs the answer; `deadline` is the invocation's. Logs the result; a failure is logged, not returned:
/// the invocation's own outcome is what the function returns either way.
pub async fn answer(
    client: &Client,
    reply: &Reply,
    outcome: &Outcome<'_>,
    database: &str,
    deadline: Option<SystemTime>,
) {
    let body = body(reply, outcome, database);
    let status = if matches!(outcome, Outcome::Failed(_)) {
        "FAILED"
    } else {
        "SUCCESS"
    };
    let until = Deadline::new(deadline, RETURN_RESERVE);
    let target = without_query(&reply.url);
    let mut attempt = 0;
    loop {
        attempt += 1;
        let limit = until.bound(ATTEMPT_TIMEOUT);
        let refused = match tokio::time::timeout(limit, put(client, &reply.url, &body)).await {
            Ok(Ok(())) => {
                tracing::info!(status, attempt, bytes = body.len(), url = %target, "answered CloudFormation");
                return;
            }
            Ok(Err(refused)) => refused,
            Err(_) => Refused {
                text: format!("no answer within {:.1} s", limit.as_secs_f64()),
                transient: true,
            },
        };
        let backoff = FIRST_BACKOFF * 2u32.pow(attempt - 1);
        let time_for_more = until.left().is_none_or(|left| left > backoff);
        if !refused.transient || attempt >= MAX_ATTEMPTS || !time_for_more {
            tracing::error!(status, attempt, url = %target, reason = %refused.text, "could not answer CloudFormation; the stack waits for its timeout");
            return;
        }
        tracing::warn!(status, attempt, backoff_ms = backoff.as_millis() as u64, reason = %refused.text, "answer to CloudFormation refused; retrying");
        tokio::time::sleep(backoff).await;
    }
}

/// One PUT. No `Content-Type`: the presigned URL signs none, and S3 refuses a header it did not sign.
async fn put(client: &Client, url: &str, body: &[u8]) -> Result<(), Refused> {
    let fatal = |text: String| Refused {
        text,
        transient: false,
    };
    let mut request = aws_smithy_runtime_api::http::Request::new(SdkBody::from(body.to_vec()));
    request
        .set_method("PUT")
        .map_err(|e| fatal(one_line(&e.to_string())))?;
    request
        .set_uri(url)
        .map_err(|_| fatal("ResponseURL is not a valid URL".to_string()))?;
    let response = client
        .connector()
        .call(request)
        .await
        .map_err(|e| Refused {
            text: chain(&e),
            transient: !e.is_user(),
        })?;
    let status = response.status().as_u16();
    if (200..300).contains(&status) {
        return Ok(());
    }
    let detail = read_detail(response.into_body()).await;
    Err(Refused {
        text: one_line(&format!("HTTP {status} {detail}")),
        transient: status >= 500,
    })
}

/// The start of an error body (S3's `<Code>…</Code><Message>…`), for the log line.
async fn read_detail(body: SdkBody) -> String {
    use http_body_util::BodyExt;
    match tokio::time::timeout(Duration::from_secs(1), body.collect()).await {
        Ok(Ok(collected)) => {
            let bytes = collected.to_bytes();
            String::from_utf8_lossy(&bytes[..bytes.len().min(300)]).into_owned()
        }
        _ => String::new(),
    }
}

/// `https://host/path` without the signed query.
fn without_query(url: &str) -> &str {
    url.split_once('?').map_or(url, |(base, _)| base)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn reply(physical: Option<&str>) -> Reply {
        let mut event = json!({
            "ResponseURL": "https://bucket.s3.amazonaws.com/key?X-Amz-Signature=secret",
            "StackId": "arn:aws:cloudformation:eu-west-3:123456789012:stack/s/1",
            "RequestId": "r-1",
            "LogicalResourceId": "Schema",
        });
        if let Some(id) = physical {
            event["PhysicalResourceId"] = json!(id);
        }
        Reply::from_event(event.as_object().unwrap()).unwrap()
    }

    fn parsed(bytes: &[u8]) -> Value {
        serde_json::from_slice(bytes).unwrap()
    }

    #[test]
    fn failure_reason_is_cut_to_fit_and_ids_are_stable() {
        let long = InitError::MigrationFailed {
            version: 2,
            name: "x".into(),
            sqlstate: "42601".into(),
            message: "\"quoted\" ".repeat(2000),
        };
        let bytes = body(&reply(None), &Outcome::Failed(&long), "documents_db");
        assert!(
            bytes.len() <= MAX_BODY && bytes.len() > MAX_BODY - 16,
            "{}",
            bytes.len()
        );
        let v = parsed(&bytes);
        assert_eq!(v["Status"], "FAILED");
        assert_eq!(v["PhysicalResourceId"], "init-fn:documents_db");
        let reason = v["Reason"].as_str().unwrap();
        assert!(reason.starts_with("MigrationFailed: migration 2 (x) failed: SQLSTATE 42601"));
        assert!(reason.ends_with('…'));
        assert_eq!(v["Data"], json!({"Database": "documents_db"}));

        let echoed = body(
            &reply(Some("init-fn:other")),
            &Outcome::Kept,
            "documents_db",
        );
        let v = parsed(&echoed);
        assert_eq!(v["PhysicalResourceId"], "init-fn:other");
        assert_eq!(v["Status"], "SUCCESS");
    }

    #[test]
    fn the_signed_query_never_prints() {
        let r = reply(None);
        assert!(!format!("{r:?}").contains("secret"));
        assert_eq!(without_query(&r.url), "https://bucket.s3.amazonaws.com/key");
    }
}
