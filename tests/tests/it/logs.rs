//! `cargo xtask logs` against moto's CloudWatch Logs on 127.0.0.1: log events seeded with
//! PutLogEvents (two invocations on two streams, one failed, JSON and text lines), read over several
//! pages, rendered by invocation; the filters; `--follow` picking up later events; a missing group.
//! Then what deploy sets up for the logs (the group before the function, its retention, the
//! LoggingConfig as moto received it), clean removing it, and `cargo xtask run` end to end.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tests::log_groups::retention;
use tests::moto::Moto;
use xtask_aws::aws::{Clients, logs};
use xtask_aws::log_view::{Filter, Level, View, grouped};
use xtask_aws::logs::{fetch, follow, group_name, show};

const FUNCTION: &str = "ca-a2a-db-init";
const OK_ID: &str = "0a1b2c3d-1111-4e5f-8a9b-000000000001";
const FAILED_ID: &str = "9f8e7d6c-2222-4e5f-8a9b-000000000002";

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// A successful invocation in JSON (platform lines as text, as with a Text system log format).
fn ok_invocation(t: i64) -> Vec<(i64, String)> {
    let ts = "2026-12-01T10:00:00.100Z";
    vec![
        (t, format!("START RequestId: {OK_ID} Version: $LATEST")),
        (
            t + 1,
            format!(
                r#"{{"timestamp":"{ts}","level":"INFO","message":"fetching the database secret","requestId":"{OK_ID}","action":"Apply","secret_id":"ca-a2a/db-password"}}"#
            ),
        ),
        (
            t + 2,
            format!(
                r#"{{"timestamp":"{ts}","level":"INFO","message":"migration applied","requestId":"{OK_ID}","version":1,"name":"initial_schema","ms":8,"adopted":false}}"#
            ),
        ),
        (
            t + 3,
            format!(
                r#"{{"timestamp":"{ts}","level":"DEBUG","message":"a debug line","requestId":"{OK_ID}"}}"#
            ),
        ),
        (
            t + 4,
            format!(
                r#"{{"_aws":{{"Timestamp":1796119200123,"CloudWatchMetrics":[{{"Namespace":"init-fn","Dimensions":[["FunctionName","Action"]],"Metrics":[{{"Name":"Duration","Unit":"Milliseconds"}},{{"Name":"Succeeded","Unit":"Count"}}]}}]}},"FunctionName":"{FUNCTION}","Action":"apply","requestId":"{OK_ID}","Duration":22,"Succeeded":1}}"#
            ),
        ),
        (t + 5, format!("END RequestId: {OK_ID}")),
        (
            t + 6,
            format!(
                "REPORT RequestId: {OK_ID}\tDuration: 37.79 ms\tBilled Duration: 38 ms\tMemory Size: 128 MB\tMax Memory Used: 12 MB"
            ),
        ),
    ]
}

/// A failed invocation in text lines.
fn failed_invocation(t: i64) -> Vec<(i64, String)> {
    vec![
        (t, format!("START RequestId: {FAILED_ID} Version: $LATEST")),
        (
            t + 1,
            " INFO fetching the database secret action=Apply secret_id=ca-a2a/db-password"
                .to_string(),
        ),
        (
            t + 2,
            " WARN database connection closed with an error error=reset".to_string(),
        ),
        (
            t + 3,
            "ERROR localhost:5432/documents_db: password authentication failed errorType=Auth"
                .to_string(),
        ),
        (t + 4, format!("END RequestId: {FAILED_ID}")),
        (
            t + 5,
            format!(
                "REPORT RequestId: {FAILED_ID}\tDuration: 51.02 ms\tBilled Duration: 52 ms\tMemory Size: 128 MB\tMax Memory Used: 14 MB"
            ),
        ),
    ]
}

async fn put(
    c: &Clients,
    group: &str,
    stream: &str,
    events: &[(i64, String)],
) -> anyhow::Result<()> {
    let _ = c
        .logs
        .create_log_stream()
        .log_group_name(group)
        .log_stream_name(stream)
        .send()
        .await;
    let mut req = c
        .logs
        .put_log_events()
        .log_group_name(group)
        .log_stream_name(stream);
    for (t, m) in events {
        req = req.log_events(
            logs::types::InputLogEvent::builder()
                .timestamp(*t)
                .message(m)
                .build()?,
        );
    }
    req.send().await?;
    Ok(())
}

async fn seeded() -> anyhow::Result<(Moto, Clients, i64)> {
    let moto = Moto::start()?;
    let c = Clients::new(&moto.sdk_config().await);
    let group = group_name(FUNCTION);
    c.logs
        .create_log_group()
        .log_group_name(&group)
        .send()
        .await?;
    let t = now_ms() - 60_000;
    // Interleaved in time on two streams: the view still shows each invocation in one piece.
    put(&c, &group, "2026/12/01/[$LATEST]aaaa", &ok_invocation(t)).await?;
    put(
        &c,
        &group,
        "2026/12/01/[$LATEST]bbbb",
        &failed_invocation(t + 3),
    )
    .await?;
    Ok((moto, c, t))
}

fn rendered(events: Vec<xtask_aws::log_view::Event>, filter: Filter) -> String {
    let mut view = View::new(filter, false);
    grouped(events)
        .iter()
        .flat_map(|e| view.event(e))
        .map(|l| l + "\n")
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_reads_every_page_and_renders_by_invocation() -> anyhow::Result<()> {
    let (_moto, c, t) = seeded().await?;
    let group = group_name(FUNCTION);
    let all = fetch(&c, &group, t - 1000, None).await?;
    assert_eq!(all.len(), 13);
    let paged = fetch(&c, &group, t - 1000, Some(2)).await?;
    assert_eq!(paged.len(), all.len(), "pages of 2 read to the end");

    let text = rendered(all.clone(), Filter::default());
    insta::with_settings!({ snapshot_path => "../../snapshots", prepend_module_to_snapshot => false }, {
        insta::assert_snapshot!("logs_rendered", text);
    });
    assert!(
        text.contains(
            "FAILED 9f8e7d6c: Auth: localhost:5432/documents_db: password authentication failed"
        ),
        "{text}"
    );
    assert!(!text.contains("FAILED 0a1b2c3d"), "{text}");

    let one = rendered(
        all.clone(),
        Filter {
            request_id: Some("9f8e7d6c".into()),
            level: None,
        },
    );
    assert!(
        one.lines()
            .all(|l| !l.contains(OK_ID) && !l.contains("0a1b2c3d")),
        "{one}"
    );
    assert_eq!(one.lines().count(), 7, "{one}");
    let warn = rendered(
        all,
        Filter {
            request_id: None,
            level: Some(Level::Warn),
        },
    );
    assert!(
        !warn.contains("fetching the database secret") && !warn.contains("METRICS"),
        "{warn}"
    );
    assert!(
        warn.contains(" WARN database connection closed")
            && warn.contains("REPORT RequestId: 0a1b"),
        "{warn}"
    );

    let mut out = Vec::new();
    let printed = show(
        &c,
        &group,
        t - 1000,
        &mut View::new(Filter::default(), true),
        &mut out,
    )
    .await?;
    assert_eq!(printed, 13);
    let raw = String::from_utf8(out)?;
    assert!(
        raw.lines().any(|l| l.starts_with("{\"timestamp\"")),
        "--json keeps the stored lines: {raw}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_prints_later_events_once_and_stops_when_asked() -> anyhow::Result<()> {
    let (_moto, c, t) = seeded().await?;
    let mut c = c;
    c.policy.poll = Duration::from_millis(200);
    let group = group_name(FUNCTION);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let writer = {
        let c = c.clone();
        let group = group.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(700)).await;
            let later = now_ms();
            put(
                &c,
                &group,
                "2026/12/01/[$LATEST]cccc",
                &[
                    (
                        later,
                        "START RequestId: cccc0000-3333 Version: $LATEST".into(),
                    ),
                    (later + 1, " INFO written after follow started".into()),
                    (
                        later + 2,
                        "REPORT RequestId: cccc0000-3333\tDuration: 1.00 ms".into(),
                    ),
                ],
            )
            .await?;
            tokio::time::sleep(Duration::from_millis(1500)).await;
            let _ = stop_tx.send(());
            anyhow::Ok(())
        })
    };
    let mut out = Vec::new();
    let mut view = View::new(Filter::default(), false);
    follow(&c, &group, t - 1000, &mut view, &mut out, async {
        let _ = stop_rx.await;
    })
    .await?;
    writer.await??;
    let text = String::from_utf8(out)?;
    assert_eq!(
        text.matches("START RequestId: 0a1b2c3d").count(),
        1,
        "each event once: {text}"
    );
    assert_eq!(
        text.matches("written after follow started").count(),
        1,
        "{text}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_log_group_is_a_clear_message() -> anyhow::Result<()> {
    let moto = Moto::start()?;
    let c = Clients::new(&moto.sdk_config().await);
    let err = format!(
        "{:#}",
        fetch(&c, "/aws/lambda/never-deployed", 0, None)
            .await
            .unwrap_err()
    );
    assert!(
        err.contains(
            "there is no log group /aws/lambda/never-deployed: the function was never deployed"
        ),
        "{err}"
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// deploy sets the logs up; clean removes them.

/// A call to moto's own API (`/moto-api/...`), outside the SDK; the answer's body.
fn moto_api(moto: &Moto, method: &str, path: &str) -> anyhow::Result<String> {
    use std::io::{Read, Write};
    let addr = moto.endpoint.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(addr)?;
    write!(
        stream,
        "{method} {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Length: 0\r\n\r\n"
    )?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    anyhow::ensure!(head.contains(" 200 "), "{method} {path}: {head}");
    Ok(body.to_string())
}

/// The requests moto received since the recorder started: (operation, JSON body), in order.
fn recorded(moto: &Moto) -> anyhow::Result<Vec<(String, serde_json::Value)>> {
    use base64::Engine;
    let text = moto_api(moto, "GET", "/moto-api/recorder/download-recording")?;
    let mut calls = Vec::new();
    for line in text.lines() {
        let entry: serde_json::Value = serde_json::from_str(line)?;
        let body = entry["body"].as_str().unwrap_or_default();
        let body = if entry["body_encoded"] == true {
            String::from_utf8(base64::engine::general_purpose::STANDARD.decode(body)?)?
        } else {
            body.to_string()
        };
        let target = entry["headers"]
            .as_object()
            .and_then(|h| {
                h.iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case("x-amz-target"))
            })
            .and_then(|(_, v)| v.as_str())
            .map(|t| t.rsplit('.').next().unwrap_or(t).to_string());
        let url = entry["url"].as_str().unwrap_or_default();
        let operation = match (entry["method"].as_str(), target) {
            (_, Some(target)) => target,
            (Some("POST"), None) if url.ends_with("/2015-03-31/functions") => {
                "CreateFunction".into()
            }
            (Some("PUT"), None) if url.ends_with("/configuration") => {
                "UpdateFunctionConfiguration".into()
            }
            (Some(method), None) => format!("{method} {url}"),
            _ => continue,
        };
        calls.push((operation, serde_json::from_str(&body).unwrap_or_default()));
    }
    Ok(calls)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_creates_the_log_group_before_the_function_with_its_logging_config()
-> anyhow::Result<()> {
    use tests::seed::{add_secrets_manager_endpoint, seed, settings};
    use xtask_aws::deploy::{change::Change, deploy};
    let moto = Moto::start()?;
    let c = Clients::new(&moto.sdk_config().await);
    let seeded = seed(&c, true).await?;
    add_secrets_manager_endpoint(&c, &seeded).await?;
    let s = settings();
    let group = group_name(&s.function_name);
    let zip = xtask::build::zip_bytes(b"\x7fELF logs")?;
    let mut out = Vec::new();

    // --dry-run shows the group and creates nothing.
    let report = deploy(&c, &s, &zip, true, &mut out).await?;
    let create = Change::CreateLogGroup {
        name: group.clone(),
        retention_days: 30,
    };
    assert!(report.changes.contains(&create), "{:?}", report.changes);
    let printed = String::from_utf8(std::mem::take(&mut out))?;
    assert!(
        printed.contains("  - create log group /aws/lambda/ca-a2a-db-init (retention 30 days)"),
        "{printed}"
    );
    assert_eq!(
        retention(&c, &group).await?,
        None,
        "dry run created the group"
    );

    moto_api(&moto, "POST", "/moto-api/recorder/start-recording")?;
    deploy(&c, &s, &zip, false, &mut out).await?;
    assert_eq!(retention(&c, &group).await?, Some(Some(30)));
    let calls = recorded(&moto)?;
    let position = |op: &str| calls.iter().position(|(o, _)| o == op);
    let (created_group, created_function) =
        (position("CreateLogGroup"), position("CreateFunction"));
    assert!(
        created_group.is_some() && created_group < position("PutRetentionPolicy"),
        "{calls:?}"
    );
    assert!(
        position("PutRetentionPolicy") < created_function,
        "{calls:?}"
    );
    let (_, body) = &calls[created_function.unwrap()];
    assert_eq!(
        body["LoggingConfig"],
        serde_json::json!({"LogFormat": "JSON", "ApplicationLogLevel": "INFO", "SystemLogLevel": "WARN", "LogGroup": group})
    );

    // Unchanged: nothing. A retention changed by hand is set back, and only that.
    let report = deploy(&c, &s, &zip, false, &mut out).await?;
    assert_eq!(report.changes, vec![]);
    c.logs
        .put_retention_policy()
        .log_group_name(&group)
        .retention_in_days(7)
        .send()
        .await?;
    let report = deploy(&c, &s, &zip, false, &mut out).await?;
    assert_eq!(
        report.changes,
        vec![Change::SetRetention {
            days: 30,
            from: Some(7)
        }]
    );
    assert_eq!(retention(&c, &group).await?, Some(Some(30)));

    // Text from the flags: the configuration update carries no levels (Lambda refuses them).
    let mut text = s.clone();
    xtask_aws::aws::SettingsArgs {
        log_format: Some(xtask_aws::aws::LogFormat::Text),
        memory: Some(256),
        ..Default::default()
    }
    .apply(&mut text);
    moto_api(&moto, "POST", "/moto-api/recorder/reset-recording")?;
    deploy(&c, &text, &zip, false, &mut out).await?;
    let calls = recorded(&moto)?;
    let update = calls
        .iter()
        .find(|(o, _)| o == "UpdateFunctionConfiguration")
        .map(|(_, b)| b)
        .expect("a configuration update");
    assert_eq!(
        update["LoggingConfig"],
        serde_json::json!({"LogFormat": "Text", "LogGroup": group})
    );

    let removed = xtask_aws::clean::clean(&c, &s, false, &mut out).await?;
    assert!(
        removed.contains(&format!("log group {group}")),
        "{removed:?}"
    );
    assert_eq!(retention(&c, &group).await?, None);
    Ok(())
}

#[test]
fn bad_logging_settings_are_named() {
    let manifest =
        std::fs::read_to_string(xtask::project_root().join("init-fn/Cargo.toml")).unwrap();
    for (from, to, named) in [
        (
            "log_format = \"JSON\"",
            "log_format = \"xml\"",
            "log_format = \"xml\" is not one of JSON, Text",
        ),
        (
            "log_level = \"INFO\"",
            "log_level = \"verbose\"",
            "log_level = \"verbose\" is not one of TRACE",
        ),
        (
            "log_retention_days = 30",
            "log_retention_days = 31",
            "log_retention_days = 31 is not a retention CloudWatch Logs accepts",
        ),
        (
            "log_format = \"JSON\"",
            "log_format = \"Text\"",
            "log_level = \"INFO\" needs log_format = \"JSON\"",
        ),
    ] {
        assert!(manifest.contains(from), "{from}");
        let err = xtask_aws::aws::Settings::from_toml(&manifest.replace(from, to)).unwrap_err();
        assert!(format!("{err:#}").contains(named), "{err:#}");
    }
}

// ---------------------------------------------------------------------------------------------
// `cargo xtask run`: deploy and clean against moto, the invocation through `serve`'s Invoke API
// (the real bootstrap, JSON logging, local Postgres).

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_deploys_invokes_and_cleans_up_even_after_a_failed_invocation() -> anyhow::Result<()> {
    use tests::seed::{add_secrets_manager_endpoint, seed, settings};
    use xtask::local::logging::{LogControls, LogFormat};
    use xtask::serve::LocalStack;
    let bootstrap = tokio::task::spawn_blocking(xtask::test_local::build_local_bootstrap).await??;
    let mut stack =
        LocalStack::start(&xtask::local::postgres::PgChoice::Auto, bootstrap, None).await?;
    stack.spec.logging = Some(LogControls {
        format: LogFormat::Json,
        level: None,
    });
    let api = stack.serve(([127, 0, 0, 1], 0).into()).await?;
    let invoker =
        Clients::new(&xtask_aws::aws::local_sdk_config(&api.endpoint(), "eu-west-3").await);
    let moto = Moto::start()?;
    let c = Clients::new(&moto.sdk_config().await);
    let seeded = seed(&c, true).await?;
    add_secrets_manager_endpoint(&c, &seeded).await?;
    let s = settings();
    let zip = xtask::build::zip_bytes(b"\x7fELF run")?;
    let left = |c: Clients, s: xtask_aws::aws::Settings| async move {
        let function = xtask_aws::deploy::function::observe(&c, &s.function_name).await?;
        let role = tests::iam::read_role(&c, &s.role).await?;
        let group = retention(&c, &group_name(&s.function_name)).await?;
        anyhow::Ok((function.is_some(), role.is_some(), group.is_some()))
    };

    let mut out = Vec::new();
    xtask_aws::run::run(
        &c,
        &invoker,
        &s,
        &zip,
        br#"{"action":"apply"}"#,
        false,
        &mut out,
    )
    .await?;
    let text = String::from_utf8(std::mem::take(&mut out))?;
    for part in [
        "== deploy",
        "== invoke",
        "--- log tail ---",
        "== clean",
        "deleted function ca-a2a-db-init",
    ] {
        assert!(text.contains(part), "{part}: {text}");
    }
    assert!(
        text.lines()
            .any(|l| l.contains(" INFO ") && l.contains("connecting")),
        "the JSON lines rendered: {text}"
    );
    assert_eq!(
        left(c.clone(), s.clone()).await?,
        (false, false, false),
        "{text}"
    );

    xtask_aws::run::run(
        &c,
        &invoker,
        &s,
        &zip,
        br#"{"action":"status"}"#,
        true,
        &mut out,
    )
    .await?;
    let text = String::from_utf8(std::mem::take(&mut out))?;
    assert!(
        text.contains("== kept function ca-a2a-db-init (--keep)"),
        "{text}"
    );
    assert_eq!(
        left(c.clone(), s.clone()).await?,
        (true, true, true),
        "{text}"
    );

    let failed = xtask_aws::run::run(
        &c,
        &invoker,
        &s,
        &zip,
        br#"{"action":"drop"}"#,
        false,
        &mut out,
    )
    .await;
    let text = String::from_utf8(std::mem::take(&mut out))?;
    let err = format!("{:#}", failed.expect_err("a failed invocation fails run"));
    assert!(
        err.contains("the invocation failed (cleaned up)") && err.contains("InvalidEvent"),
        "{err}"
    );
    assert!(
        text.contains("FunctionError (Unhandled): InvalidEvent"),
        "{text}"
    );
    assert_eq!(
        left(c.clone(), s.clone()).await?,
        (false, false, false),
        "{text}"
    );

    drop(api);
    stack.stop().await
}
