//! `cargo xtask logs` against moto's CloudWatch Logs on 127.0.0.1: log events seeded with
//! PutLogEvents (two invocations on two streams, one failed, JSON and text lines), read over several
//! pages, rendered by invocation; the filters; `--follow` picking up later events; a missing group.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

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
    insta::with_settings!({ snapshot_path => "../snapshots", prepend_module_to_snapshot => false }, {
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
