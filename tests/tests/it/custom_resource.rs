//! The CloudFormation custom-resource protocol through the real bootstrap, under both local runtimes:
//! a local HTTP server stands in for the presigned S3 `ResponseURL` (it refuses a `Content-Type`, as
//! S3 does for a header the URL did not sign) and records every PUT. Create/Update/Delete, every
//! errorType, a `Timeout`, a bad event, a URL that answers 500 twice, one that never answers.

use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{
    body::Bytes,
    extract::State,
    http::{HeaderMap, Method, StatusCode, Uri},
    response::IntoResponse,
};
use serde_json::{Value, json};
use xtask::local::{
    function::{Function, Runtime},
    postgres::{PgChoice, PgServer},
    runtime_api::{FunctionSpec, Invocation, Outcome},
    secrets_manager::SecretsManager,
};
use xtask::test_local::{self, Profile};

const SECRET_ID: &str = "ca-a2a/db-password";
/// The presigned URL's session token: a credential that must never be printed.
const TOKEN: &str = "IQoJb3JpZ2luX2VjEXAMPLEtoken";
const SIGNATURE: &str = "5d6a7c0e1f2b3a4958677a8b9cadbecf0e1d2c3b4a5968778695a4b3c2d1e0f9";
const STACK_ID: &str = "arn:aws:cloudformation:eu-west-3:123456789012:stack/ca-a2a/0f5c2a10-b0a1-11f0-8c7e-0a1b2c3d4e5f";

/// What the stand-in does with one PUT.
#[derive(Clone, Copy, Debug)]
enum Behaviour {
    Status(u16),
    /// Accepts the request and never answers.
    Hang,
}

/// One request as received.
#[derive(Clone, Debug)]
struct Put {
    method: Method,
    uri: String,
    headers: HeaderMap,
    body: Bytes,
}

#[derive(Default)]
struct Shared {
    received: Vec<Put>,
    /// Per RequestId (the path's last segment): what to do with its next PUTs; then 200.
    script: HashMap<String, VecDeque<Behaviour>>,
}

/// A bucket standing in for CloudFormation's response bucket.
struct ResponseBucket {
    addr: std::net::SocketAddr,
    shared: Arc<Mutex<Shared>>,
}

impl ResponseBucket {
    async fn start() -> anyhow::Result<ResponseBucket> {
        let shared = Arc::new(Mutex::new(Shared::default()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let app = axum::Router::new()
            .fallback(receive)
            .with_state(shared.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok(ResponseBucket { addr, shared })
    }

    /// A presigned-URL-shaped ResponseURL for `request_id`.
    fn url(&self, request_id: &str) -> String {
        format!(
            "http://{}/cloudformation-custom-resource-response-euwest3/arn%3Aaws%3Acloudformation%3Aeu-west-3%3A123456789012%3Astack/ca-a2a/0f5c/Schema/{request_id}?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=ASIAEXAMPLE%2F20261201%2Feu-west-3%2Fs3%2Faws4_request&X-Amz-Date=20261201T090000Z&X-Amz-Expires=7200&X-Amz-SignedHeaders=host&X-Amz-Security-Token={TOKEN}&X-Amz-Signature={SIGNATURE}",
            self.addr
        )
    }

    fn script(&self, request_id: &str, behaviours: &[Behaviour]) {
        self.shared
            .lock()
            .unwrap()
            .script
            .insert(request_id.to_string(), behaviours.iter().copied().collect());
    }

    /// Every PUT made for `request_id`, in order.
    fn puts(&self, request_id: &str) -> Vec<Put> {
        let suffix = format!("/{request_id}");
        self.shared
            .lock()
            .unwrap()
            .received
            .iter()
            .filter(|p| {
                p.uri
                    .split('?')
                    .next()
                    .unwrap_or_default()
                    .ends_with(&suffix)
            })
            .cloned()
            .collect()
    }
}

async fn receive(
    State(shared): State<Arc<Mutex<Shared>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> axum::response::Response {
    let request_id = uri
        .path()
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .to_string();
    let behaviour = {
        let mut shared = shared.lock().unwrap();
        shared.received.push(Put {
            method,
            uri: uri.to_string(),
            headers: headers.clone(),
            body,
        });
        shared
            .script
            .get_mut(&request_id)
            .and_then(VecDeque::pop_front)
    };
    if headers.contains_key("content-type") {
        let xml = "<Error><Code>SignatureDoesNotMatch</Code><Message>The request signature we calculated does not match the signature you provided.</Message></Error>";
        return (StatusCode::FORBIDDEN, xml).into_response();
    }
    match behaviour {
        None => StatusCode::OK.into_response(),
        Some(Behaviour::Status(code)) => {
            let xml = "<Error><Code>InternalError</Code><Message>We encountered an internal error. Please try again.</Message></Error>";
            (StatusCode::from_u16(code).unwrap(), xml).into_response()
        }
        Some(Behaviour::Hang) => std::future::pending().await,
    }
}

/// A custom-resource request as CloudFormation sends it.
fn request(
    bucket: &ResponseBucket,
    request_type: &str,
    request_id: &str,
    properties: Value,
    physical_resource_id: Option<&str>,
) -> Value {
    let mut properties = properties;
    properties["ServiceToken"] =
        json!("arn:aws:lambda:eu-west-3:123456789012:function:ca-a2a-db-init");
    let mut event = json!({
        "RequestType": request_type,
        "ServiceToken": "arn:aws:lambda:eu-west-3:123456789012:function:ca-a2a-db-init",
        "ResponseURL": bucket.url(request_id),
        "StackId": STACK_ID,
        "RequestId": request_id,
        "LogicalResourceId": "SchemaMigration",
        "ResourceType": "Custom::SchemaMigration",
        "ResourceProperties": properties,
    });
    if let Some(id) = physical_resource_id {
        event["PhysicalResourceId"] = json!(id);
    }
    if request_type == "Update" {
        event["OldResourceProperties"] = json!({"MigrationsChecksum": "sha256:old"});
    }
    event
}

/// The one answer to `request_id` (checked: a PUT to exactly the signed URL, no content type, a
/// length, at most 4096 bytes, the contract's keys, ids echoed, no credential) as JSON.
fn answer(bucket: &ResponseBucket, request_id: &str, password: &str) -> Value {
    let puts = bucket.puts(request_id);
    assert_eq!(puts.len(), 1, "one PUT for {request_id}: {puts:#?}");
    check_put(bucket, request_id, &puts[0], password)
}

fn check_put(bucket: &ResponseBucket, request_id: &str, put: &Put, password: &str) -> Value {
    assert_eq!(put.method, Method::PUT);
    let signed = bucket.url(request_id);
    let signed = &signed[signed.find("/cloudformation").unwrap()..];
    assert_eq!(
        put.uri, signed,
        "the PUT goes to the presigned URL as given"
    );
    assert!(
        !put.headers.contains_key("content-type"),
        "{:?}",
        put.headers
    );
    assert!(
        !put.headers.contains_key("transfer-encoding"),
        "{:?}",
        put.headers
    );
    assert_eq!(
        put.headers["content-length"].to_str().unwrap(),
        put.body.len().to_string()
    );
    assert!(put.body.len() <= 4096, "{} bytes", put.body.len());
    let text = std::str::from_utf8(&put.body).unwrap();
    assert!(!text.contains(password) && !text.contains(TOKEN), "{text}");
    let v: Value = serde_json::from_str(text).unwrap();
    let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "Status",
            "Reason",
            "PhysicalResourceId",
            "StackId",
            "RequestId",
            "LogicalResourceId",
            "Data"
        ]
    );
    assert_eq!(v["StackId"], STACK_ID);
    assert_eq!(v["RequestId"], request_id);
    assert_eq!(v["LogicalResourceId"], "SchemaMigration");
    v
}

/// One scenario's fixtures: a Postgres cluster, the Secrets Manager emulator, the response bucket.
struct Setup {
    server: PgServer,
    secrets: SecretsManager,
    bucket: ResponseBucket,
    bootstrap: std::path::PathBuf,
    runtime: Runtime,
}

impl Setup {
    async fn start(runtime: Runtime) -> anyhow::Result<Setup> {
        let bootstrap = test_local::build_bootstrap(Profile::Local)?;
        let server = PgServer::start(&PgChoice::Local).await?;
        let secrets = SecretsManager::start().await?;
        secrets.put(SECRET_ID, server.password());
        secrets.put("ca-a2a/wrong-password", "not-the-password");
        secrets.put("ca-a2a/no-password", r#"{"username":"postgres"}"#);
        Ok(Setup {
            server,
            secrets,
            bucket: ResponseBucket::start().await?,
            bootstrap,
            runtime,
        })
    }

    /// The function for `database`, with `overrides` of its environment.
    async fn function(
        &self,
        database: &str,
        overrides: &[(&str, String)],
        timeout: Duration,
    ) -> anyhow::Result<Function> {
        let mut spec = FunctionSpec::new(&self.bootstrap, test_local::FUNCTION_NAME);
        spec.timeout = timeout;
        spec.env = test_local::function_env(&self.server, &self.secrets, database, SECRET_ID);
        for (key, value) in overrides {
            spec.env.retain(|(k, _)| k != key);
            spec.env.push((key.to_string(), value.clone()));
        }
        Function::start(self.runtime, spec).await
    }

    /// Invokes and checks that neither the password nor the URL's token shows anywhere.
    async fn invoke(&self, function: &mut Function, event: Value) -> anyhow::Result<Invocation> {
        let invocation = function.invoke(event).await?;
        let (payload, _) = invocation.payload(function.spec().timeout);
        for secret in [self.server.password(), TOKEN, SIGNATURE] {
            assert!(
                !invocation.log.contains(secret) && !payload.to_string().contains(secret),
                "{secret} leaked:\n{}\n{payload}",
                invocation.log
            );
        }
        Ok(invocation)
    }

    fn answer(&self, request_id: &str) -> Value {
        answer(&self.bucket, request_id, self.server.password())
    }
}

fn report(invocation: &Invocation) -> &Value {
    match &invocation.outcome {
        Outcome::Response(v) => v,
        other => panic!("expected a response, got {other}\n{}", invocation.log),
    }
}

fn error(invocation: &Invocation) -> (&str, &str) {
    match &invocation.outcome {
        Outcome::FunctionError {
            error_type,
            error_message,
        } => (error_type, error_message),
        other => panic!("expected a FunctionError, got {other}\n{}", invocation.log),
    }
}

/// The answer's body with what differs between runs (none of its fields today) as a snapshot.
fn snapshot(name: &str, answer: &Value) {
    insta::with_settings!({ snapshot_path => "../../snapshots", prepend_module_to_snapshot => false }, {
        insta::assert_json_snapshot!(name, answer);
    });
}

async fn create_update_delete(setup: &Setup) -> anyhow::Result<()> {
    let db = "cr_main";
    setup.server.create_database(db).await?;
    let mut function = setup.function(db, &[], Duration::from_secs(30)).await?;
    let checksum = json!({"MigrationsChecksum": "sha256:1"});

    let created = setup
        .invoke(
            &mut function,
            request(&setup.bucket, "Create", "create-1", checksum.clone(), None),
        )
        .await?;
    assert_eq!(report(&created)["status"], "ok");
    assert_eq!(report(&created)["migrations"][0]["state"], "applied");
    let answer = setup.answer("create-1");
    snapshot("custom_resource_create", &answer);
    assert_eq!(answer["PhysicalResourceId"], "init-fn:cr_main");
    assert_eq!(
        answer["Data"],
        json!({"AppliedVersions": "1", "LatestVersion": "1", "Database": "cr_main"})
    );

    // An Update echoes the id it is sent (a new one would make CloudFormation delete the "old").
    let updated = setup
        .invoke(
            &mut function,
            request(
                &setup.bucket,
                "Update",
                "update-1",
                json!({"Action": "verify"}),
                Some("init-fn:cr_main"),
            ),
        )
        .await?;
    assert_eq!(report(&updated)["action"], "verify");
    let answer = setup.answer("update-1");
    snapshot("custom_resource_update_verify", &answer);
    assert_eq!(answer["Status"], "SUCCESS");
    assert_eq!(answer["Data"]["AppliedVersions"], "");

    // A Delete changes nothing: same schema, same ledger, not even the secret is read.
    let schema = setup.server.dump_schema(db).await?;
    let rows = ledger(&setup.server, db).await?;
    let secret_reads = setup.secrets.request_count();
    let deleted = setup
        .invoke(
            &mut function,
            request(
                &setup.bucket,
                "Delete",
                "delete-1",
                checksum,
                Some("init-fn:cr_main"),
            ),
        )
        .await?;
    assert_eq!(
        report(&deleted)["status"],
        "skipped",
        "{}",
        report(&deleted)
    );
    let answer = setup.answer("delete-1");
    snapshot("custom_resource_delete", &answer);
    assert_eq!(setup.server.dump_schema(db).await?, schema);
    assert_eq!(ledger(&setup.server, db).await?, rows);
    assert_eq!(setup.secrets.request_count(), secret_reads);

    // S3 answers 500 twice, then 200: three identical PUTs, one SUCCESS.
    setup
        .bucket
        .script("flaky-1", &[Behaviour::Status(500), Behaviour::Status(503)]);
    let flaky = setup
        .invoke(
            &mut function,
            request(
                &setup.bucket,
                "Update",
                "flaky-1",
                json!({}),
                Some("init-fn:cr_main"),
            ),
        )
        .await?;
    assert_eq!(report(&flaky)["status"], "ok");
    let puts = setup.bucket.puts("flaky-1");
    assert_eq!(puts.len(), 3, "{puts:#?}");
    for put in &puts {
        check_put(&setup.bucket, "flaky-1", put, setup.server.password());
        assert_eq!(put.body, puts[0].body);
    }
    function.shutdown().await;
    Ok(())
}

async fn ledger(server: &PgServer, db: &str) -> anyhow::Result<Vec<(i32, String, String)>> {
    let client = server.client(db).await?;
    Ok(client
        .query(
            "SELECT version, checksum, applied_at::text FROM public._init_fn_migrations ORDER BY 1",
            &[],
        )
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect())
}

/// An invocation that must fail with `want`.
struct ErrorCase {
    want: &'static str,
    db: &'static str,
    env: Vec<(&'static str, String)>,
    properties: Value,
    timeout: Duration,
}

/// Every errorType: the invocation fails with it, and the answer is FAILED with `Reason` =
/// `errorType: errorMessage`, exactly what the invocation returned.
async fn every_error_is_answered(setup: &Setup) -> anyhow::Result<()> {
    let server = &setup.server;
    for db in ["cr_errors", "cr_fresh", "cr_edited", "cr_conflict"] {
        server.create_database(db).await?;
    }
    // An applied database whose ledger says 0001 had other bytes.
    let mut f = setup
        .function("cr_edited", &[], Duration::from_secs(30))
        .await?;
    report(&setup.invoke(&mut f, json!({})).await?);
    f.shutdown().await;
    server
        .client("cr_edited")
        .await?
        .batch_execute(
            "UPDATE public._init_fn_migrations SET checksum = 'sha256:00' WHERE version = 1",
        )
        .await?;
    // A `documents` table of another shape: 0001's foreign key to it fails.
    server
        .client("cr_conflict")
        .await?
        .batch_execute("CREATE TABLE documents (id integer)")
        .await?;
    // Another run holds the migration lock.
    let holder = server.client("cr_errors").await?;
    holder
        .execute(
            "SELECT pg_advisory_lock($1)",
            &[&init_fn::engine::run::LOCK_KEY],
        )
        .await?;
    let closed_port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let silent_port = silent.local_addr()?.port();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            held.push(socket);
        }
    });

    let closed = closed_port.to_string();
    let silent = silent_port.to_string();
    let on = |db: &'static str, want: &'static str, env: &[(&'static str, &str)]| ErrorCase {
        want,
        db,
        env: env.iter().map(|(k, v)| (*k, v.to_string())).collect(),
        properties: json!({}),
        timeout: Duration::from_secs(30),
    };
    let cases = [
        on("cr_errors", "Config", &[("DB_SSLMODE", "prefer")]),
        ErrorCase {
            properties: json!({"Action": "drop"}),
            ..on("cr_errors", "InvalidEvent", &[])
        },
        on(
            "cr_errors",
            "SecretFetch",
            &[("DB_SECRET_ID", "ca-a2a/no-such-secret")],
        ),
        on(
            "cr_errors",
            "SecretFormat",
            &[("DB_SECRET_ID", "ca-a2a/no-password")],
        ),
        on("cr_errors", "Connect", &[("DB_PORT", &closed)]),
        on("cr_errors", "Tls", &[("DB_HOST", "127.0.0.1")]),
        on(
            "cr_errors",
            "Auth",
            &[("DB_SECRET_ID", "ca-a2a/wrong-password")],
        ),
        on("cr_errors", "LockTimeout", &[("DB_LOCK_TIMEOUT_S", "1")]),
        on("cr_edited", "ChecksumMismatch", &[]),
        on("cr_conflict", "MigrationFailed", &[]),
        ErrorCase {
            properties: json!({"Action": "verify"}),
            ..on("cr_fresh", "Verify", &[])
        },
        // A database that accepts the connection and never speaks: the deadline comes first, and
        // the answer still goes out before Lambda's.
        ErrorCase {
            timeout: Duration::from_secs(6),
            ..on(
                "cr_errors",
                "Timeout",
                &[
                    ("DB_PORT", &silent),
                    ("DB_CONNECT_TIMEOUT_S", "60"),
                    ("DB_DEADLINE_MARGIN_S", "1"),
                ],
            )
        },
    ];
    for ErrorCase {
        want,
        db,
        env,
        properties,
        timeout,
    } in cases
    {
        let mut function = setup.function(db, &env, timeout).await?;
        let request_id = format!("error-{want}");
        let event = request(&setup.bucket, "Create", &request_id, properties, None);
        let invocation = setup.invoke(&mut function, event).await?;
        let (error_type, message) = error(&invocation);
        assert_eq!(error_type, want, "{message}\n{}", invocation.log);
        let answer = setup.answer(&request_id);
        assert_eq!(answer["Status"], "FAILED");
        assert_eq!(answer["Reason"], format!("{error_type}: {message}"));
        // A configuration that cannot be read names no database: the default one's id.
        let db = if want == "Config" { "documents_db" } else { db };
        assert_eq!(answer["PhysicalResourceId"], format!("init-fn:{db}"));
        assert_eq!(answer["Data"], json!({"Database": db}));
        function.shutdown().await;
    }
    // No ledger where every run failed before its migrations (verify never creates one).
    for db in ["cr_errors", "cr_fresh"] {
        let no_ledger = server
            .client(db)
            .await?
            .query_one(
                "SELECT to_regclass('public._init_fn_migrations') IS NULL",
                &[],
            )
            .await?;
        assert!(no_ledger.get::<_, bool>(0), "{db}");
    }
    Ok(())
}

/// A bad event is answered FAILED; one that cannot be answered (no http(s) ResponseURL) is not.
async fn bad_events(setup: &Setup) -> anyhow::Result<()> {
    setup.server.create_database("cr_bad").await?;
    let mut function = setup
        .function("cr_bad", &[], Duration::from_secs(30))
        .await?;
    let invocation = setup
        .invoke(
            &mut function,
            request(&setup.bucket, "Upgrade", "bad-1", json!({}), None),
        )
        .await?;
    let (error_type, message) = error(&invocation);
    assert_eq!(error_type, "InvalidEvent");
    let answer = setup.answer("bad-1");
    snapshot("custom_resource_bad_request_type", &answer);
    assert_eq!(answer["Reason"], format!("InvalidEvent: {message}"));

    let mut unanswerable = request(&setup.bucket, "Create", "bad-2", json!({}), None);
    unanswerable["ResponseURL"] = json!(5);
    let invocation = setup.invoke(&mut function, unanswerable).await?;
    assert_eq!(error(&invocation).0, "InvalidEvent");
    assert!(setup.bucket.puts("bad-2").is_empty());
    function.shutdown().await;
    Ok(())
}

/// A ResponseURL that never answers: the function gives up in time and still returns its outcome
/// before the function timeout (a `Sandbox.Timedout` here would fail the test).
async fn silent_response_url(setup: &Setup) -> anyhow::Result<()> {
    setup.server.create_database("cr_silent").await?;
    let mut function = setup
        .function("cr_silent", &[], Duration::from_secs(8))
        .await?;
    setup.bucket.script("silent-1", &[Behaviour::Hang; 8]);
    let invocation = setup
        .invoke(
            &mut function,
            request(&setup.bucket, "Create", "silent-1", json!({}), None),
        )
        .await?;
    assert_eq!(report(&invocation)["status"], "ok", "{}", invocation.log);
    let puts = setup.bucket.puts("silent-1");
    assert!(!puts.is_empty());
    for put in &puts {
        check_put(&setup.bucket, "silent-1", put, setup.server.password());
    }
    function.shutdown().await;
    Ok(())
}

async fn protocol(runtime: Runtime) -> anyhow::Result<()> {
    let setup = Setup::start(runtime).await?;
    create_update_delete(&setup).await?;
    bad_events(&setup).await?;
    silent_response_url(&setup).await?;
    every_error_is_answered(&setup).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_resource_protocol_under_the_emulator() -> anyhow::Result<()> {
    protocol(Runtime::Emulator).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_resource_protocol_under_rie() -> anyhow::Result<()> {
    protocol(Runtime::Rie).await
}
