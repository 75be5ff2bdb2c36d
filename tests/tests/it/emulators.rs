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

// ---------------------------------------------------------------------------------------------
// Runtime API emulator, with purpose-made shell bootstraps speaking the Runtime API via curl.

mod runtime {
    use std::os::unix::fs::PermissionsExt;
    use std::time::Duration;

    use serde_json::json;
    use xtask::local::runtime_api::{FunctionSpec, LocalFunction, Outcome};

    /// Takes events forever; `$HANDLE` is the shell that answers one (`$ID`, `$BODY`, `$API`).
    fn bootstrap(dir: &ScratchDir, name: &str, init: &str, handle: &str) -> std::path::PathBuf {
        let script = format!(
            r#"#!/bin/bash
set -u
API="http://$AWS_LAMBDA_RUNTIME_API/2018-06-01/runtime"
{init}
while true; do
  HDRS=$(mktemp)
  BODY=$(curl -sS -D "$HDRS" "$API/invocation/next")
  ID=$(grep -i '^lambda-runtime-aws-request-id:' "$HDRS" | cut -d' ' -f2 | tr -d '\r')
  DEADLINE=$(grep -i '^lambda-runtime-deadline-ms:' "$HDRS" | cut -d' ' -f2 | tr -d '\r')
  ARN=$(grep -i '^lambda-runtime-invoked-function-arn:' "$HDRS" | cut -d' ' -f2 | tr -d '\r')
  rm -f "$HDRS"
  echo "handling $ID"
  {handle}
done
"#
        );
        let path = dir.path().join(name);
        std::fs::write(&path, script).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    /// A directory for one test's bootstrap, removed afterwards.
    struct ScratchDir(std::path::PathBuf);

    impl ScratchDir {
        fn new() -> ScratchDir {
            static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
            let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let path = std::env::temp_dir().join(format!("init-fn-emu-{}-{n}", std::process::id()));
            std::fs::create_dir_all(&path).unwrap();
            ScratchDir(path)
        }

        fn path(&self) -> &std::path::Path {
            &self.0
        }
    }

    impl Drop for ScratchDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn spec(path: std::path::PathBuf, timeout: Duration) -> FunctionSpec {
        let mut spec = FunctionSpec::new(path, "emu-test");
        spec.timeout = timeout;
        spec.env.push(("DB_HOST".into(), "db.example".into()));
        spec
    }

    const ECHO: &str = r#"curl -sS -X POST "$API/invocation/$ID/response" -d "{\"event\":$BODY,\"name\":\"$AWS_LAMBDA_FUNCTION_NAME\",\"mem\":\"$AWS_LAMBDA_FUNCTION_MEMORY_SIZE\",\"db\":\"$DB_HOST\",\"arn\":\"$ARN\",\"deadline\":$DEADLINE,\"pid\":$$}" >/dev/null"#;

    #[tokio::test]
    async fn warm_invocations_reuse_the_process_and_see_lambda_env() -> anyhow::Result<()> {
        let dir = ScratchDir::new();
        let path = bootstrap(&dir, "echo", "echo init-line", ECHO);
        let mut function = LocalFunction::start(spec(path, Duration::from_secs(5))).await?;

        let first = function.invoke(json!({"action": "status"})).await?;
        assert!(first.cold && first.init_duration.is_some());
        let Outcome::Response(v) = &first.outcome else {
            panic!("{:?}\n{}", first.outcome, first.log)
        };
        assert_eq!(v["event"], json!({"action": "status"}));
        assert_eq!(v["name"], "emu-test");
        assert_eq!(v["mem"], "128");
        assert_eq!(v["db"], "db.example");
        assert_eq!(
            v["arn"],
            "arn:aws:lambda:eu-west-3:000000000000:function:emu-test"
        );
        let deadline = v["deadline"].as_u64().unwrap() as u128;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_millis();
        assert!(
            deadline > now && deadline <= now + 5_000,
            "{deadline} vs {now}"
        );
        assert!(first.log.contains("init-line"), "{}", first.log);
        assert!(
            first
                .log
                .contains(&format!("handling {}", first.request_id)),
            "{}",
            first.log
        );
        assert!(first.log.starts_with("START RequestId: "));
        assert!(first.log.contains("REPORT RequestId: "));
        assert!(first.max_rss_kb.is_some());

        let second = function.invoke(json!({})).await?;
        assert!(!second.cold && second.init_duration.is_none());
        let Outcome::Response(v2) = &second.outcome else {
            panic!("{:?}", second.outcome)
        };
        assert_eq!(
            v2["pid"], v["pid"],
            "warm invocation must reuse the process"
        );
        assert!(!second.log.contains("init-line"));
        assert_ne!(first.request_id, second.request_id);
        Ok(())
    }

    #[tokio::test]
    async fn function_error_is_reported_with_its_type() -> anyhow::Result<()> {
        let dir = ScratchDir::new();
        let handle = r#"curl -sS -X POST "$API/invocation/$ID/error" -H 'Lambda-Runtime-Function-Error-Type: Auth' -d '{"errorType":"Auth","errorMessage":"password authentication failed"}' >/dev/null"#;
        let path = bootstrap(&dir, "err", "", handle);
        let mut function = LocalFunction::start(spec(path, Duration::from_secs(5))).await?;
        let inv = function.invoke(json!({})).await?;
        assert_eq!(
            inv.outcome,
            Outcome::FunctionError {
                error_type: "Auth".into(),
                error_message: "password authentication failed".into()
            }
        );
        let (payload, function_error) = inv.payload(Duration::from_secs(5));
        assert_eq!(payload["errorType"], "Auth");
        assert_eq!(function_error, Some("Unhandled"));
        // Still warm: a function error does not kill the process.
        assert!(function.pid().is_some());
        Ok(())
    }

    #[tokio::test]
    async fn timeout_kills_the_process_and_reports_sandbox_timedout() -> anyhow::Result<()> {
        let dir = ScratchDir::new();
        let path = bootstrap(&dir, "slow", "", "sleep 30");
        let mut function = LocalFunction::start(spec(path, Duration::from_millis(700))).await?;
        let inv = function.invoke(json!({})).await?;
        assert_eq!(inv.outcome, Outcome::Timeout);
        assert_eq!(inv.error_type().as_deref(), Some("Sandbox.Timedout"));
        assert!(
            inv.duration >= Duration::from_millis(700) && inv.duration < Duration::from_secs(5)
        );
        let (payload, _) = inv.payload(Duration::from_millis(700));
        assert_eq!(payload["errorType"], "Sandbox.Timedout");
        assert!(
            payload["errorMessage"]
                .as_str()
                .unwrap()
                .contains("Task timed out after 0.70 seconds")
        );
        assert!(inv.log.contains("Task timed out"), "{}", inv.log);
        assert!(function.pid().is_none());
        // The next invocation is cold again.
        let again = function.invoke(json!({})).await?;
        assert!(again.cold);
        Ok(())
    }

    #[tokio::test]
    async fn crash_before_response_is_reported() -> anyhow::Result<()> {
        let dir = ScratchDir::new();
        let path = bootstrap(&dir, "crash", "", "echo 'about to die' >&2; exit 3");
        let mut function = LocalFunction::start(spec(path, Duration::from_secs(5))).await?;
        let inv = function.invoke(json!({})).await?;
        let Outcome::Crash { status } = &inv.outcome else {
            panic!("{:?}", inv.outcome)
        };
        assert!(status.contains('3'), "{status}");
        assert_eq!(inv.error_type().as_deref(), Some("Runtime.ExitError"));
        assert!(inv.log.contains("about to die"), "{}", inv.log);
        assert!(function.pid().is_none());
        Ok(())
    }

    #[tokio::test]
    async fn init_error_is_reported() -> anyhow::Result<()> {
        let dir = ScratchDir::new();
        let init = r#"curl -sS -X POST "$API/init/error" -d '{"errorType":"Config","errorMessage":"DB_HOST is not set"}' >/dev/null; sleep 30"#;
        let path = bootstrap(&dir, "initerr", init, "exit 0");
        let mut function = LocalFunction::start(spec(path, Duration::from_secs(5))).await?;
        let inv = function.invoke(json!({})).await?;
        assert_eq!(
            inv.outcome,
            Outcome::InitError {
                error_type: "Config".into(),
                error_message: "DB_HOST is not set".into()
            }
        );
        assert!(
            function.pid().is_none(),
            "the process is discarded after an init error"
        );
        Ok(())
    }
}
