//! CloudFormation and S3 in a moto server, over their own wire protocols (the Query API's form POST,
//! S3's REST PUT) with hyper: the template tests need a bucket, one upload and CreateStack, and SDK
//! crates for four calls would add minutes of compile time. moto routes a request by the credential
//! scope of its Authorization header and checks no signature.

use std::collections::BTreeMap;

use anyhow::{Context, bail};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;

use crate::seed::REGION;

/// One call to the moto server at `endpoint` (`http://127.0.0.1:<port>`); the answer's body.
async fn call(
    endpoint: &str,
    service: &str,
    method: &str,
    path: &str,
    content_type: Option<&str>,
    body: Vec<u8>,
) -> anyhow::Result<String> {
    let host = endpoint
        .strip_prefix("http://")
        .context("moto's endpoint is http://host:port")?;
    let stream = tokio::net::TcpStream::connect(host).await?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let scope = format!("test/20261201/{REGION}/{service}/aws4_request");
    let mut req = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", host)
        .header(
            "authorization",
            format!("AWS4-HMAC-SHA256 Credential={scope}, SignedHeaders=host, Signature=0"),
        );
    if let Some(t) = content_type {
        req = req.header("content-type", t);
    }
    let resp = sender
        .send_request(req.body(Full::new(Bytes::from(body)))?)
        .await?;
    let status = resp.status();
    let text = String::from_utf8_lossy(&resp.into_body().collect().await?.to_bytes()).into_owned();
    if !status.is_success() {
        bail!("moto {service} {method} {path}: {status}: {text}");
    }
    Ok(text)
}

/// A bucket in the region holding `bytes` at `key`.
pub async fn put_object(
    endpoint: &str,
    bucket: &str,
    key: &str,
    bytes: Vec<u8>,
) -> anyhow::Result<()> {
    let location = format!(
        "<CreateBucketConfiguration><LocationConstraint>{REGION}</LocationConstraint></CreateBucketConfiguration>"
    );
    call(
        endpoint,
        "s3",
        "PUT",
        &format!("/{bucket}"),
        None,
        location.into_bytes(),
    )
    .await?;
    call(
        endpoint,
        "s3",
        "PUT",
        &format!("/{bucket}/{key}"),
        None,
        bytes,
    )
    .await?;
    Ok(())
}

/// A Query API call of CloudFormation with these parameters; the XML answer.
async fn query(endpoint: &str, params: &[(String, String)]) -> anyhow::Result<String> {
    let form: Vec<String> = params
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect();
    let body = format!("Version=2010-05-15&{}", form.join("&"));
    let form_type = "application/x-www-form-urlencoded; charset=utf-8";
    call(
        endpoint,
        "cloudformation",
        "POST",
        "/",
        Some(form_type),
        body.into_bytes(),
    )
    .await
}

/// `CreateStack` with the template body, its parameters and CAPABILITY_NAMED_IAM; the stack id.
pub async fn create_stack(
    endpoint: &str,
    name: &str,
    template: &str,
    parameters: &[(&str, &str)],
) -> anyhow::Result<String> {
    let mut params = vec![
        ("Action".to_string(), "CreateStack".to_string()),
        ("StackName".to_string(), name.to_string()),
        ("TemplateBody".to_string(), template.to_string()),
        (
            "Capabilities.member.1".to_string(),
            "CAPABILITY_NAMED_IAM".to_string(),
        ),
    ];
    for (i, (k, v)) in parameters.iter().enumerate() {
        let n = i + 1;
        params.push((format!("Parameters.member.{n}.ParameterKey"), k.to_string()));
        params.push((
            format!("Parameters.member.{n}.ParameterValue"),
            v.to_string(),
        ));
    }
    let xml = query(endpoint, &params).await?;
    elements(&xml, "StackId")
        .into_iter()
        .next()
        .with_context(|| format!("CreateStack answered no StackId: {xml}"))
}

/// The stack's resources: logical id -> (type, status), from `DescribeStackResources`.
pub async fn stack_resources(
    endpoint: &str,
    name: &str,
) -> anyhow::Result<BTreeMap<String, (String, String)>> {
    let params = [
        ("Action".to_string(), "DescribeStackResources".to_string()),
        ("StackName".to_string(), name.to_string()),
    ];
    let xml = query(endpoint, &params).await?;
    Ok(elements(&xml, "member")
        .iter()
        .filter_map(|m| {
            let first = |tag| elements(m, tag).into_iter().next();
            Some((
                first("LogicalResourceId")?,
                (first("ResourceType")?, first("ResourceStatus")?),
            ))
        })
        .collect())
}

/// The texts of every `<tag>…</tag>` in `xml` (the answers here nest no element in itself).
fn elements(xml: &str, tag: &str) -> Vec<String> {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    let mut found = Vec::new();
    let mut rest = xml;
    while let Some(start) = rest.find(&open) {
        let after = &rest[start + open.len()..];
        let Some(end) = after.find(&close) else { break };
        found.push(after[..end].to_string());
        rest = &after[end + close.len()..];
    }
    found
}

/// application/x-www-form-urlencoded, every byte but the unreserved ones escaped.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
