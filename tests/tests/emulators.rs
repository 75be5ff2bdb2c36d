//! The local stand-ins themselves: Postgres providers (TLS with the per-run CA, schema dumps),
//! the Secrets Manager wire protocol, and the Runtime API emulator with purpose-made bootstraps.

use std::process::Command;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use xtask::local::postgres::{PgChoice, PgServer};
use xtask::local::secrets_manager::SecretsManager;

/// `psql` with `sslmode=verify-full` against `host`, using the server's per-run CA.
fn psql_verify_full(server: &PgServer, host: &str) -> std::process::Output {
    let ca = server.ca_bundle_path().expect("per-run CA");
    let conninfo = format!(
        "host={host} port={} user={} dbname=postgres sslmode=verify-full sslrootcert={} connect_timeout=10",
        server.port(),
        server.user(),
        ca.display()
    );
    Command::new("psql")
        .args([
            conninfo.as_str(),
            "-Atc",
            "select ssl from pg_stat_ssl where pid = pg_backend_pid()",
        ])
        .env("PGPASSWORD", server.password())
        .output()
        .expect("run psql")
}

async fn check_provider(choice: PgChoice, kind: &str) -> anyhow::Result<()> {
    let server = PgServer::start(&choice).await?;
    assert_eq!(server.kind(), kind);
    assert_eq!(server.host(), "localhost");
    assert_eq!(server.user(), "postgres");
    assert!(!format!("{server:?}").contains(server.password()));

    let ok = psql_verify_full(&server, "localhost");
    assert!(
        ok.status.success(),
        "verify-full against localhost: {}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&ok.stdout).trim(), "t");
    let mismatch = psql_verify_full(&server, "127.0.0.1");
    assert!(
        !mismatch.status.success(),
        "verify-full against 127.0.0.1 must fail"
    );
    let stderr = String::from_utf8_lossy(&mismatch.stderr);
    assert!(stderr.contains("does not match host name"), "{stderr}");

    server.create_database("emu_check").await?;
    let client = server.client("emu_check").await?;
    client
        .batch_execute(
            "CREATE TABLE t (id serial PRIMARY KEY, s text UNIQUE); CREATE INDEX t_s ON t (s);",
        )
        .await?;
    let dump = server.dump_schema("emu_check").await?;
    assert!(dump.contains("CREATE TABLE public.t ("), "{dump}");
    assert!(
        dump.contains("CREATE INDEX t_s ON public.t USING btree (s);"),
        "{dump}"
    );
    assert!(
        dump.lines()
            .all(|l| !l.is_empty() && !l.starts_with("--") && !l.starts_with("SET ")),
        "{dump}"
    );
    let version = server.server_version().await?;
    assert!(
        version.chars().next().is_some_and(|c| c.is_ascii_digit()),
        "{version}"
    );
    server.stop().await
}

#[tokio::test]
async fn docker_provider_serves_tls_for_localhost_only() -> anyhow::Result<()> {
    check_provider(
        PgChoice::Docker {
            image: "postgres:17".into(),
        },
        "docker",
    )
    .await
}

#[tokio::test]
async fn local_provider_serves_tls_for_localhost_only() -> anyhow::Result<()> {
    check_provider(PgChoice::Local, "local").await
}

#[tokio::test]
async fn local_provider_removes_its_cluster() -> anyhow::Result<()> {
    let server = PgServer::start(&PgChoice::Local).await?;
    let ca = server.ca_bundle_path().unwrap().to_path_buf();
    let port = server.port();
    drop(server);
    assert!(!ca.exists(), "temporary cluster directory left behind");
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
    Ok(())
}

/// One raw HTTP/1.1 request; returns (status, headers, body).
async fn post(endpoint: &str, target: &str, body: &str) -> anyhow::Result<(u16, String, String)> {
    let addr = endpoint.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    let request = format!(
        "POST / HTTP/1.1\r\nHost: {addr}\r\nX-Amz-Target: {target}\r\n\
         Content-Type: application/x-amz-json-1.1\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let status = head.split(' ').nth(1).unwrap_or("0").parse()?;
    Ok((status, head.to_lowercase(), body.to_string()))
}

#[tokio::test]
async fn secrets_manager_speaks_get_secret_value() -> anyhow::Result<()> {
    let sm = SecretsManager::start().await?;
    sm.put("ca-a2a/db-password", "s3cret");
    let endpoint = sm.endpoint();
    assert!(endpoint.starts_with("http://127.0.0.1:"));

    let (status, head, body) = post(
        &endpoint,
        "secretsmanager.GetSecretValue",
        r#"{"SecretId":"ca-a2a/db-password"}"#,
    )
    .await?;
    assert_eq!(status, 200, "{body}");
    assert!(head.contains("content-type: application/x-amz-json-1.1"));
    let v: serde_json::Value = serde_json::from_str(&body)?;
    assert_eq!(v["SecretString"], "s3cret");
    assert_eq!(v["Name"], "ca-a2a/db-password");
    assert_eq!(v["VersionStages"][0], "AWSCURRENT");
    assert!(v["CreatedDate"].is_f64());
    let arn = v["ARN"].as_str().unwrap().to_string();
    assert!(arn.starts_with("arn:aws:secretsmanager:"), "{arn}");

    // By ARN, as RDS-managed secrets are usually referenced.
    let (status, _, body) = post(
        &endpoint,
        "secretsmanager.GetSecretValue",
        &serde_json::json!({ "SecretId": arn }).to_string(),
    )
    .await?;
    assert_eq!(status, 200, "{body}");

    sm.remove("ca-a2a/db-password");
    let (status, head, body) = post(
        &endpoint,
        "secretsmanager.GetSecretValue",
        r#"{"SecretId":"ca-a2a/db-password"}"#,
    )
    .await?;
    assert_eq!(status, 400);
    assert!(
        head.contains("x-amzn-errortype: resourcenotfoundexception"),
        "{head}"
    );
    let v: serde_json::Value = serde_json::from_str(&body)?;
    assert_eq!(v["__type"], "ResourceNotFoundException");
    assert_eq!(
        v["message"],
        "Secrets Manager can't find the specified secret."
    );

    let (status, _, body) = post(&endpoint, "secretsmanager.ListSecrets", "{}").await?;
    assert_eq!(status, 400);
    assert!(body.contains("UnknownOperationException"), "{body}");
    assert_eq!(sm.request_count(), 4);
    Ok(())
}
