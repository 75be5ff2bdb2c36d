//! Reports cost the same at any table size: above the threshold `rows` is the catalog's estimate and
//! says so; below it, and on `verify` with `exact_counts`, it is an exact `count(*)`.

use serde_json::{Value, json};
use tests::harness::{DB, Harness};

fn documents(report: &Value) -> &Value {
    &report["tables"][0]
}

#[tokio::test]
async fn large_tables_are_estimated_small_ones_counted_and_exact_counts_counts()
-> anyhow::Result<()> {
    let h = Harness::from_env().await?;
    h.invoke(&[], json!({})).await?;
    let client = h.client(DB).await?;

    // Below the threshold: exact, whatever the statistics say.
    client
        .batch_execute(
            "INSERT INTO documents (s3_key, document_type, file_name)
             SELECT 'k/' || g, 'invoice', 'f' || g FROM generate_series(1, 1234) g;
             ANALYZE documents",
        )
        .await?;
    let small = h.invoke(&[], json!({"action": "status"})).await?;
    assert_eq!(documents(&small)["name"], "documents");
    assert_eq!(documents(&small)["rows"], 1234, "{small:#}");
    assert_eq!(documents(&small)["rows_exact"], true);

    // Above it: the estimate, flagged; a few rows off the exact number is the point.
    client
        .batch_execute(
            "INSERT INTO documents (s3_key, document_type, file_name)
             SELECT 'big/' || g, 'invoice', 'f' || g FROM generate_series(1, 150000) g;
             ANALYZE documents",
        )
        .await?;
    let exact_total = 151_234i64;
    for action in ["apply", "status", "plan", "verify"] {
        let report = h.invoke(&[], json!({"action": action})).await?;
        let doc = documents(&report);
        assert_eq!(doc["rows_exact"], false, "{action}: {report:#}");
        let rows = doc["rows"].as_i64().unwrap();
        assert!(
            (rows - exact_total).abs() < exact_total / 10,
            "{action}: estimate {rows} too far from {exact_total}"
        );
        // processing_logs stays empty and small: counted.
        assert_eq!(report["tables"][1]["rows_exact"], true, "{action}");
    }

    // Asked for: exact.
    let exact = h
        .invoke(&[], json!({"action": "verify", "exact_counts": true}))
        .await?;
    assert_eq!(documents(&exact)["rows"], exact_total);
    assert_eq!(documents(&exact)["rows_exact"], true);

    // Rows added since the last ANALYZE are seen through the table's current size, not missed.
    client
        .batch_execute(
            "INSERT INTO documents (s3_key, document_type, file_name)
             SELECT 'more/' || g, 'invoice', 'f' || g FROM generate_series(1, 150000) g",
        )
        .await?;
    let grown = h.invoke(&[], json!({"action": "status"})).await?;
    let rows = documents(&grown)["rows"].as_i64().unwrap();
    assert!(
        rows > 250_000,
        "estimate {rows} must follow the table's growth since ANALYZE"
    );
    Ok(())
}

#[tokio::test]
async fn exact_counts_is_refused_outside_verify() -> anyhow::Result<()> {
    let h = Harness::from_env().await?;
    for event in [
        json!({"action": "apply", "exact_counts": true}),
        json!({"exact_counts": true}),
        json!({"action": "verify", "exact_counts": "yes"}),
    ] {
        let err = h.invoke(&[], event.clone()).await.unwrap_err();
        assert_eq!(err.error_type(), "InvalidEvent", "{event}: {err}");
    }
    Ok(())
}
