//! Lambda's logging controls and the EMF metrics: the line writer in-process (both formats, the
//! level filter, the runtime's Debug line replaced), then the real bootstrap (profile local) under the
//! Runtime API emulator, its JSON lines and its EMF documents, each checked against a JSON Schema
//! written from the EMF specification by python-jsonschema (the reference validator, in `.venv`).

use std::{
    io::Write,
    process::{Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context, bail};
use init_fn::{
    InitError,
    invocation::log::{Format, Lines, Settings},
    invocation::metrics::{self, Invocation},
};
use serde_json::{Value, json};
use tests::harness::{DB, Harness, SECRET_ID};
use tracing::level_filters::LevelFilter;
use tracing_subscriber::layer::SubscriberExt;
use xtask::local::runtime_api::{FunctionSpec, LocalFunction, Outcome};
use xtask::test_local;

/// A `Write` the test reads back.
#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Write for Buffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Buffer {
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

fn fixed_clock() -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(1_796_119_200_123)
}

/// Runs `events` under a subscriber with only the init-fn layer; returns what it wrote.
fn written(format: Format, level: LevelFilter, events: impl FnOnce()) -> String {
    let out = Buffer::default();
    let settings = Settings {
        format,
        level,
        notices: Vec::new(),
    };
    let lines = Lines::new(&settings, Box::new(out.clone())).with_clock(fixed_clock);
    tracing::subscriber::with_default(tracing_subscriber::registry().with(lines), events);
    out.text()
}

/// What an invocation of init-fn logs, from the crates that log it.
fn an_invocation() {
    tracing::info!(target: "init_fn", "cold start, before any invocation");
    let span = tracing::info_span!(
        target: "lambda_runtime::layers::trace",
        "Lambda runtime invoke",
        requestId = "8f5e2a51-0c47-4d1e-9a0b-2f4f1b3c6d7e"
    );
    let _entered = span.enter();
    tracing::info!(target: "init_fn", action = ?init_fn::Action::Apply, secret_id = %SECRET_ID, "fetching the database secret");
    tracing::info!(target: "init_fn", host = %"localhost", port = 5432u16, db = %DB, sslmode = "verify-full", "connecting");
    tracing::debug!(target: "init_fn::engine::run", "a debug line of init-fn");
    tracing::info!(target: "init_fn::engine::run", version = 1u32, name = %"initial_schema", ms = 8u64, adopted = false, "migration applied");
    tracing::info!(target: "aws_smithy_runtime", "an SDK info line");
    tracing::warn!(target: "tokio_postgres", "a driver warning");
    init_fn::invocation::log::failure(&InitError::InvalidEvent(
        "unknown field `tf`, expected `action` or `exact_counts`".into(),
    ));
    // The runtime's own line for the same failure: its Rust Debug, which `failure` replaces.
    tracing::error!(target: "lambda_runtime::layers::panic", "{:?}", InitError::InvalidEvent("unknown field `tf`".into()));
    tracing::error!(target: "lambda_runtime::layers::panic", error = "boom", "user handler panicked");
}

#[test]
fn text_lines_are_todays() {
    let text = written(Format::Text, LevelFilter::INFO, an_invocation);
    insta::with_settings!({ snapshot_path => "../../snapshots", prepend_module_to_snapshot => false }, {
        insta::assert_snapshot!("log_text_lines", text);
    });
    assert!(!text.contains("InvalidEvent(\""), "{text}");
}

#[test]
fn json_lines_carry_the_request_id_and_the_fields() {
    let text = written(Format::Json, LevelFilter::INFO, an_invocation);
    insta::with_settings!({ snapshot_path => "../../snapshots", prepend_module_to_snapshot => false }, {
        insta::assert_snapshot!("log_json_lines", text);
    });
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert!(lines[0].get("requestId").is_none(), "outside an invocation");
    for line in &lines[1..] {
        assert_eq!(line["requestId"], "8f5e2a51-0c47-4d1e-9a0b-2f4f1b3c6d7e");
        assert_eq!(line["timestamp"], "2026-12-01T10:00:00.123Z");
    }
    let migration = lines
        .iter()
        .find(|l| l["message"] == "migration applied")
        .unwrap();
    assert_eq!(
        (
            &migration["version"],
            &migration["ms"],
            &migration["adopted"]
        ),
        (&json!(1), &json!(8), &json!(false))
    );
    let failure: Vec<&Value> = lines.iter().filter(|l| l["level"] == "ERROR").collect();
    assert_eq!(failure.len(), 2, "the failure and the panic line: {text}");
    assert_eq!(failure[0]["errorType"], "InvalidEvent");
    assert_eq!(
        failure[0]["message"],
        "unknown field `tf`, expected `action` or `exact_counts`"
    );
}

#[test]
fn the_level_filters_init_fn_and_keeps_libraries_at_warn() {
    let messages = |level| -> Vec<String> {
        written(Format::Json, level, an_invocation)
            .lines()
            .map(|l| {
                let v: Value = serde_json::from_str(l).unwrap();
                format!(
                    "{} {}",
                    v["level"].as_str().unwrap(),
                    v["message"].as_str().unwrap()
                )
            })
            .collect()
    };
    let debug = messages(LevelFilter::DEBUG);
    assert!(
        debug.contains(&"DEBUG a debug line of init-fn".to_string()),
        "{debug:?}"
    );
    assert!(!debug.iter().any(|m| m.contains("SDK info")), "{debug:?}");
    assert!(debug.contains(&"WARN a driver warning".to_string()));
    let info = messages(LevelFilter::INFO);
    assert!(!info.iter().any(|m| m.starts_with("DEBUG")), "{info:?}");
    assert_eq!(info.len(), 7, "{info:?}");
    assert_eq!(
        messages(LevelFilter::WARN),
        [
            "WARN a driver warning",
            "ERROR unknown field `tf`, expected `action` or `exact_counts`",
            "ERROR user handler panicked"
        ]
    );
    // FATAL maps to ERROR: the driver's warning goes too, the failure stays.
    let fatal = Settings::from_lookup(|k| (k == "AWS_LAMBDA_LOG_LEVEL").then(|| "FATAL".into()));
    assert_eq!(
        messages(fatal.level),
        [
            "ERROR unknown field `tf`, expected `action` or `exact_counts`",
            "ERROR user handler panicked"
        ]
    );
}

// ---------------------------------------------------------------------------------------------
// EMF documents against the schema.

/// Every problem of each document: schema violations (python-jsonschema), then dangling references
/// from the directives to root members, which a schema cannot express.
fn emf_problems(documents: &[Value]) -> anyhow::Result<Vec<String>> {
    let python = tests::harness::root().join(".venv/bin/python");
    if !python.exists() {
        bail!(
            "{} not found: the EMF schema check needs python-jsonschema; run `cargo xtask doctor --fix`",
            python.display()
        );
    }
    let schema = tests::harness::root().join("tests/fixtures/emf.schema.json");
    let script = r#"
import json, sys
try:
    import jsonschema
except ImportError:
    sys.exit("python-jsonschema is not installed in .venv: run `cargo xtask doctor --fix`")
schema = json.load(open(sys.argv[1]))
jsonschema.Draft202012Validator.check_schema(schema)
validator = jsonschema.Draft202012Validator(schema)
for i, doc in enumerate(json.load(sys.stdin)):
    for e in validator.iter_errors(doc):
        print(f"document {i}: {'/'.join(map(str, e.absolute_path))}: {e.message}")
"#;
    let mut child = Command::new(&python)
        .args(["-c", script])
        .arg(&schema)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("run {}", python.display()))?;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(serde_json::to_string(documents)?.as_bytes())?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!("jsonschema: {}", String::from_utf8_lossy(&out.stderr));
    }
    let mut problems: Vec<String> = String::from_utf8(out.stdout)?
        .lines()
        .map(String::from)
        .collect();
    for (i, doc) in documents.iter().enumerate() {
        for directive in doc["_aws"]["CloudWatchMetrics"]
            .as_array()
            .into_iter()
            .flatten()
        {
            for key in directive["Dimensions"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|s| s.as_array().unwrap())
            {
                let key = key.as_str().unwrap();
                match doc[key].as_str() {
                    Some(v) if !v.is_empty() && v.len() <= 1024 => {}
                    _ => problems.push(format!(
                        "document {i}: dimension {key} is not a root string member"
                    )),
                }
            }
            for metric in directive["Metrics"].as_array().into_iter().flatten() {
                let name = metric["Name"].as_str().unwrap();
                let ok = doc[name].is_number()
                    || doc[name]
                        .as_array()
                        .is_some_and(|a| a.len() <= 100 && a.iter().all(Value::is_number));
                if !ok {
                    problems.push(format!(
                        "document {i}: metric {name} is not a root number member"
                    ));
                }
            }
        }
    }
    Ok(problems)
}

#[test]
fn the_schema_rejects_what_the_specification_forbids() -> anyhow::Result<()> {
    let good = json!({"_aws": {"Timestamp": 1, "CloudWatchMetrics": [{"Namespace": "n", "Dimensions": [["D"]], "Metrics": [{"Name": "M", "Unit": "Count"}]}]}, "D": "d", "M": 1});
    assert_eq!(
        emf_problems(std::slice::from_ref(&good))?,
        Vec::<String>::new()
    );
    let mut bad = Vec::new();
    for (pointer, value) in [
        ("/_aws/Timestamp", json!("now")),
        ("/_aws/CloudWatchMetrics/0/Namespace", json!("")),
        (
            "/_aws/CloudWatchMetrics/0/Metrics/0/Unit",
            json!("Milliseconds/Second"),
        ),
        (
            "/_aws/CloudWatchMetrics/0/Metrics/0/StorageResolution",
            json!(5),
        ),
        (
            "/_aws/CloudWatchMetrics/0/Dimensions/0",
            json!((0..31).map(|n| format!("D{n}")).collect::<Vec<_>>()),
        ),
        ("/M", json!("1")),
        ("/D", json!(1)),
    ] {
        let mut doc = good.clone();
        let (parent, key) = pointer.rsplit_once('/').unwrap();
        let target = doc.pointer_mut(parent).unwrap();
        match key.parse::<usize>() {
            Ok(i) if target.is_array() => target[i] = value,
            _ => target[key] = value,
        }
        bad.push(doc);
    }
    let problems = emf_problems(&bad)?;
    for i in 0..bad.len() {
        assert!(
            problems
                .iter()
                .any(|p| p.starts_with(&format!("document {i}:"))),
            "document {i} passed: {problems:#?}"
        );
    }
    Ok(())
}

/// One of each error type, exhaustively: a new variant does not compile until it is listed here.
fn every_error() -> Vec<InitError> {
    let all = vec![
        InitError::Config("DB_PORT=\"x\" is not a port number (1-65535)".into()),
        InitError::InvalidEvent("unknown field `tf`".into()),
        InitError::SecretFetch("ResourceNotFoundException".into()),
        InitError::SecretFormat("no password".into()),
        InitError::Connect("connection refused".into()),
        InitError::Tls("certificate verify failed".into()),
        InitError::Auth("password authentication failed".into()),
        InitError::LockTimeout("blocked by pid 7".into()),
        InitError::ChecksumMismatch("0001 changed".into()),
        InitError::MigrationFailed {
            version: 2,
            name: "x".into(),
            sqlstate: "42P07".into(),
            message: "exists".into(),
        },
        InitError::Verify("missing index".into()),
        InitError::Timeout("deadline".into()),
    ];
    for e in &all {
        match e {
            InitError::Config(_)
            | InitError::InvalidEvent(_)
            | InitError::SecretFetch(_)
            | InitError::SecretFormat(_)
            | InitError::Connect(_)
            | InitError::Tls(_)
            | InitError::Auth(_)
            | InitError::LockTimeout(_)
            | InitError::ChecksumMismatch(_)
            | InitError::MigrationFailed { .. }
            | InitError::Verify(_)
            | InitError::Timeout(_) => {}
        }
    }
    all
}

#[test]
fn every_error_type_gives_a_valid_document_naming_it() -> anyhow::Result<()> {
    let errors = every_error();
    let docs: Vec<Value> = errors
        .iter()
        .map(|err| {
            let line = metrics::document(
                "init-fn",
                &Invocation {
                    function_name: "ca-a2a-db-init",
                    request_id: "r",
                    action: Some(init_fn::Action::Apply),
                    result: Err(err),
                    duration: Duration::from_millis(3),
                    at: fixed_clock(),
                },
            );
            serde_json::from_str(&line).unwrap()
        })
        .collect();
    assert_eq!(emf_problems(&docs)?, Vec::<String>::new());
    for (err, doc) in errors.iter().zip(&docs) {
        assert_eq!(doc["ErrorType"], err.error_type());
        assert_eq!((&doc["Succeeded"], &doc["Failed"]), (&json!(0), &json!(1)));
        assert_eq!(
            doc["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            json!([["FunctionName", "Action"], ["FunctionName", "ErrorType"]])
        );
        assert!(
            doc.get("MigrationsApplied").is_none(),
            "unknown after a failure"
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The real bootstrap.

/// The bootstrap (profile local) wired to `h`, with `extra` variables (Lambda's logging controls).
async fn function(h: &Harness, extra: &[(&str, &str)]) -> anyhow::Result<LocalFunction> {
    let bootstrap = tokio::task::spawn_blocking(test_local::build_local_bootstrap).await??;
    let mut spec = FunctionSpec::new(bootstrap, test_local::FUNCTION_NAME);
    spec.env = test_local::function_env(&h.pg, &h.secrets, DB, SECRET_ID);
    spec.env
        .extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    LocalFunction::start(spec).await
}

/// An invocation's output split into its JSON log lines and its EMF documents; anything else but
/// the emulator's START/END/REPORT lines is a failure.
fn json_output(log: &str) -> (Vec<Value>, Vec<Value>) {
    let (mut lines, mut emf) = (Vec::new(), Vec::new());
    for line in log.lines() {
        if ["START ", "END ", "REPORT "]
            .iter()
            .any(|p| line.starts_with(p))
        {
            continue;
        }
        let v: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not one JSON object ({e}): {line}\n{log}"));
        if v.get("_aws").is_some() {
            emf.push(v)
        } else {
            lines.push(v)
        }
    }
    (lines, emf)
}

fn error_of(outcome: &Outcome) -> (String, String) {
    match outcome {
        Outcome::FunctionError {
            error_type,
            error_message,
        } => (error_type.clone(), error_message.clone()),
        other => panic!("expected a function error, got {other:?}"),
    }
}

/// `timestamp`, request ids and the server's port out of a JSON line, for a snapshot.
fn redacted(line: &Value, request_id: &str, port: u16) -> Value {
    let text = line
        .to_string()
        .replace(request_id, "[request-id]")
        .replace(&format!("port\":{port}"), "port\":\"[port]\"");
    let mut v: Value = serde_json::from_str(&text).unwrap();
    let ts = v["timestamp"].as_str().unwrap();
    assert!(
        ts.len() == 24 && ts.ends_with('Z') && &ts[10..11] == "T",
        "RFC 3339 with milliseconds: {ts}"
    );
    v["timestamp"] = json!("[timestamp]");
    for ms in ["ms"] {
        if v.get(ms).is_some() {
            v[ms] = json!("[ms]");
        }
    }
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bootstrap_writes_json_lines_and_one_emf_document_per_invocation() -> anyhow::Result<()>
{
    let h = Harness::from_env().await?;
    let mut f = function(
        &h,
        &[
            ("AWS_LAMBDA_LOG_FORMAT", "JSON"),
            ("AWS_LAMBDA_LOG_LEVEL", "INFO"),
        ],
    )
    .await?;
    let migrations = init_fn::engine::run::embedded().len() as u64;
    let mut snapshot = Vec::new();
    let mut documents = Vec::new();
    for (step, event) in [
        ("apply", json!({})),
        ("rerun", json!({"action": "apply"})),
        ("status", json!({"action": "status"})),
        ("invalid", json!({"action": "drop"})),
    ] {
        let inv = f.invoke(event).await?;
        let (lines, emf) = json_output(&inv.log);
        assert_eq!(emf.len(), 1, "{step}: one EMF document\n{}", inv.log);
        let doc = &emf[0];
        for line in &lines {
            assert_eq!(line["requestId"], inv.request_id.as_str(), "{step}: {line}");
        }
        assert_eq!(
            (&doc["FunctionName"], &doc["requestId"]),
            (&json!(test_local::FUNCTION_NAME), &json!(inv.request_id))
        );
        assert!(doc["Duration"].as_u64().is_some());
        let expect = match step {
            "apply" => {
                json!({"Action": "apply", "MigrationsApplied": migrations, "MigrationsPending": 0, "Succeeded": 1, "Failed": 0})
            }
            "rerun" => {
                json!({"Action": "apply", "MigrationsApplied": 0, "MigrationsPending": 0, "Succeeded": 1, "Failed": 0})
            }
            "status" => {
                json!({"Action": "status", "MigrationsApplied": 0, "MigrationsPending": 0, "Succeeded": 1, "Failed": 0})
            }
            _ => {
                json!({"Action": "none", "ErrorType": "InvalidEvent", "Succeeded": 0, "Failed": 1})
            }
        };
        for (k, v) in expect.as_object().unwrap() {
            assert_eq!(&doc[k], v, "{step}: {k} in {doc}");
        }
        if step == "invalid" {
            let (error_type, error_message) = error_of(&inv.outcome);
            assert_eq!(error_type, "InvalidEvent");
            assert_eq!(lines.len(), 1, "only the failure line: {}", inv.log);
            assert_eq!(
                (&lines[0]["level"], &lines[0]["errorType"]),
                (&json!("ERROR"), &json!("InvalidEvent"))
            );
            assert_eq!(
                lines[0]["message"],
                error_message.as_str(),
                "the line is the errorMessage"
            );
        }
        assert!(
            !inv.log.contains(h.pg.password()),
            "password leaked: {}",
            inv.log
        );
        snapshot.push(json!({"step": step, "lines": lines.iter().map(|l| redacted(l, &inv.request_id, h.pg.port())).collect::<Vec<_>>()}));
        documents.push(doc.clone());
    }
    assert_eq!(emf_problems(&documents)?, Vec::<String>::new());
    insta::with_settings!({ snapshot_path => "../../snapshots", prepend_module_to_snapshot => false }, {
        insta::assert_json_snapshot!("log_bootstrap_json", snapshot);
    });
    f.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_format_level_filter_and_unknown_values_through_the_bootstrap() -> anyhow::Result<()> {
    let h = Harness::from_env().await?;
    // Text: today's lines; the failure is its errorMessage with errorType, not the runtime's Debug.
    let mut f = function(&h, &[]).await?;
    let ok = f.invoke(json!({})).await?;
    assert!(
        ok.log.contains(
            " INFO fetching the database secret action=Apply secret_id=ca-a2a/db-password\n"
        ),
        "{}",
        ok.log
    );
    assert!(
        ok.log.lines().any(|l| l.starts_with("{\"_aws\":")),
        "EMF in text mode too: {}",
        ok.log
    );
    let bad = f.invoke(json!({"action": "drop"})).await?;
    let (_, message) = error_of(&bad.outcome);
    let errors: Vec<&str> = bad.log.lines().filter(|l| l.starts_with("ERROR")).collect();
    assert_eq!(
        errors,
        [format!("ERROR {message} errorType=InvalidEvent")],
        "{}",
        bad.log
    );
    f.shutdown().await;

    // FATAL is ERROR: nothing but the failure line and the document.
    let mut f = function(
        &h,
        &[
            ("AWS_LAMBDA_LOG_FORMAT", "JSON"),
            ("AWS_LAMBDA_LOG_LEVEL", "FATAL"),
        ],
    )
    .await?;
    let (lines, emf) = json_output(&f.invoke(json!({})).await?.log);
    assert_eq!((lines.len(), emf.len()), (0, 1), "{lines:?}");
    let inv = f.invoke(json!({"action": 1})).await?;
    let (lines, _) = json_output(&inv.log);
    assert_eq!(lines.len(), 1, "{}", inv.log);
    assert_eq!(lines[0]["errorType"], "InvalidEvent");
    f.shutdown().await;

    // An unknown level is named once, at cold start, and INFO applies.
    let mut f = function(
        &h,
        &[
            ("AWS_LAMBDA_LOG_FORMAT", "JSON"),
            ("AWS_LAMBDA_LOG_LEVEL", "VERBOSE"),
        ],
    )
    .await?;
    let first = f.invoke(json!({"action": "status"})).await?;
    let second = f.invoke(json!({"action": "status"})).await?;
    let notice = "AWS_LAMBDA_LOG_LEVEL=\"VERBOSE\" is not one of TRACE, DEBUG, INFO, WARN, ERROR, FATAL; logging at INFO";
    let (lines, _) = json_output(&first.log);
    assert_eq!(
        lines
            .iter()
            .filter(|l| l["message"] == notice && l["level"] == "WARN")
            .count(),
        1,
        "{}",
        first.log
    );
    assert!(lines.iter().any(|l| l["level"] == "INFO"));
    assert!(!second.log.contains("VERBOSE"), "{}", second.log);
    f.shutdown().await;

    // METRICS_NAMESPACE=off: no document; a bad namespace is a Config error (with its document).
    let mut f = function(&h, &[("METRICS_NAMESPACE", "off")]).await?;
    let inv = f.invoke(json!({"action": "status"})).await?;
    assert!(!inv.log.contains("_aws"), "{}", inv.log);
    f.shutdown().await;
    let mut f = function(
        &h,
        &[
            ("AWS_LAMBDA_LOG_FORMAT", "JSON"),
            ("METRICS_NAMESPACE", "AWS/Lambda"),
        ],
    )
    .await?;
    let inv = f.invoke(json!({})).await?;
    let (error_type, message) = error_of(&inv.outcome);
    assert_eq!(error_type, "Config");
    assert!(message.contains("METRICS_NAMESPACE"), "{message}");
    let (_, emf) = json_output(&inv.log);
    assert_eq!(
        emf[0]["_aws"]["CloudWatchMetrics"][0]["Namespace"],
        "init-fn"
    );
    assert_eq!(emf[0]["ErrorType"], "Config");
    f.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_password_in_json_lines_of_real_failures() -> anyhow::Result<()> {
    let h = Harness::from_env().await?;
    let wrong = "json-wrong-password-Zq9";
    h.secrets.put("ca-a2a/wrong", wrong);
    let mut documents = Vec::new();
    for (secret, port, expected) in [
        ("ca-a2a/wrong", None, "Auth"),
        ("ca-a2a/missing", None, "SecretFetch"),
        (SECRET_ID, Some("1"), "Connect"),
    ] {
        let mut extra = vec![
            ("AWS_LAMBDA_LOG_FORMAT", "JSON"),
            ("AWS_LAMBDA_LOG_LEVEL", "TRACE"),
            ("DB_SECRET_ID", secret),
        ];
        if let Some(port) = port {
            extra.push(("DB_PORT", port));
        }
        let mut f = function(&h, &extra).await?;
        let inv = f.invoke(json!({})).await?;
        let (error_type, _) = error_of(&inv.outcome);
        assert_eq!(error_type, expected, "{}", inv.log);
        assert!(
            !inv.log.contains(wrong) && !inv.log.contains(h.pg.password()),
            "password leaked: {}",
            inv.log
        );
        let (_, emf) = json_output(&inv.log);
        assert_eq!(emf[0]["ErrorType"], expected);
        documents.extend(emf);
        f.shutdown().await;
    }
    assert_eq!(emf_problems(&documents)?, Vec::<String>::new());
    Ok(())
}
