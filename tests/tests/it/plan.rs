//! `{"action": "plan"}` with the README's pending `0002_documents_status_index` on real PostgreSQL: each
//! statement on one line, in_transaction, the lock it takes on which existing table, and the table's
//! size and row estimate from the catalog; on a fresh and on a populated database. Plan changes nothing.

use serde_json::{Value, json};
use tests::harness::{self, DB, Harness, states, with_extra};

/// The README's example second migration, as `cargo xtask migrate new` wrote it plus its statement.
const STATUS_INDEX: &str =
    include_str!("../../fixtures/migrations/0002_documents_status_index.sql");
/// The same index without CONCURRENTLY, in a transaction: what lint rejects.
const STATUS_INDEX_BLOCKING: &str = "CREATE INDEX IF NOT EXISTS idx_documents_status_upload_date ON documents (status, upload_date);\n";

fn assert_plan(name: &str, plan: &Value) {
    insta::with_settings!({ snapshot_path => "../../snapshots", prepend_module_to_snapshot => false }, {
        insta::assert_json_snapshot!(name, plan, {
            "[].statements[].locks[].size_bytes" => "[bytes]",
        });
    });
}

fn first_lock(report: &Value) -> &Value {
    &report["plan"][0]["statements"][0]["locks"][0]
}

async fn plan(h: &Harness, sql: &str) -> anyhow::Result<Value> {
    let state = h.state(&[], with_extra(&[(2, "documents_status_index", sql)]));
    Ok(harness::invoke(&state, json!({"action": "plan"})).await?)
}

#[tokio::test]
async fn plan_shows_the_pending_statements_and_their_locks() -> anyhow::Result<()> {
    let h = Harness::from_env().await?;
    h.invoke(&[], json!({})).await?;

    // Fresh: 0001 applied, documents empty and never analyzed.
    let fresh = plan(&h, STATUS_INDEX).await?;
    assert_eq!(states(&fresh), ["already_applied", "pending"]);
    assert_plan("plan_0002_fresh", &fresh["plan"]);
    let empty_size = first_lock(&fresh)["size_bytes"].as_i64().unwrap();
    assert!(empty_size > 0, "{fresh:#}");

    // Populated: 20 000 documents, analyzed, so the estimate is the catalog's.
    let client = h.client(DB).await?;
    client
        .batch_execute(
            "INSERT INTO documents (s3_key, document_type, file_name, status) \
             SELECT 'raw/' || i || '.pdf', 'invoice', i || '.pdf', \
                    (ARRAY['pending', 'validated', 'failed'])[1 + i % 3] \
             FROM generate_series(1, 20000) i; \
             ANALYZE documents",
        )
        .await?;
    let populated = plan(&h, STATUS_INDEX).await?;
    assert_plan("plan_0002_populated", &populated["plan"]);
    let shown = xtask::plan_view::render(&populated, "");
    eprintln!("{shown}");
    assert!(
        shown.contains(
            "SHARE UPDATE EXCLUSIVE on documents (blocks DDL and VACUUM, not reads or writes): "
        ),
        "{shown}"
    );
    assert!(shown.contains(", ~20000 rows"), "{shown}");
    let lock = first_lock(&populated);
    assert_eq!(lock["rows_estimate"], 20000);
    assert!(
        lock["size_bytes"].as_i64().unwrap() > empty_size + 1_000_000,
        "{lock}"
    );

    // Without CONCURRENTLY the same index blocks writes: SHARE, in a transaction.
    let blocking = plan(&h, STATUS_INDEX_BLOCKING).await?;
    assert_eq!(blocking["plan"][0]["in_transaction"], true);
    assert_eq!(first_lock(&blocking)["mode"], "SHARE");
    assert_eq!(first_lock(&blocking)["blocks"], "writes");

    // Plan changed nothing.
    assert_eq!(h.ledger(DB).await?.len(), 1);
    assert!(
        !h.relations(DB)
            .await?
            .contains(&"idx_documents_status_upload_date".to_string())
    );
    // Up to date: no plan section at all.
    let applied = harness::invoke(
        &h.state(
            &[],
            with_extra(&[(2, "documents_status_index", STATUS_INDEX)]),
        ),
        json!({}),
    )
    .await?;
    assert_eq!(states(&applied), ["already_applied", "applied"]);
    let current = plan(&h, STATUS_INDEX).await?;
    assert!(current.get("plan").is_none(), "{current:#}");
    Ok(())
}

#[tokio::test]
async fn plan_of_a_fresh_database_takes_no_lock_on_tables_it_creates() -> anyhow::Result<()> {
    let h = Harness::from_env().await?;
    let report = plan(&h, STATUS_INDEX).await?;
    assert_eq!(states(&report), ["pending", "pending"]);
    let plan = report["plan"].as_array().unwrap();
    assert_eq!(plan.len(), 2);
    assert_eq!(plan[0]["in_transaction"], true);
    assert_eq!(plan[0]["statements"].as_array().unwrap().len(), 8);
    assert_eq!(
        plan[0]["statements"][0]["sql"].as_str().unwrap(),
        "CREATE TABLE IF NOT EXISTS documents ( id SERIAL PRIMARY KEY, s3_key VARCHAR(500) UNIQUE NOT NULL, document_type VARCHAR(50) NOT NULL, file_name VARCHAR(255) NOT NULL, file_size INTEGER, upload_date TIMESTAMP DEFAULT CURRENT_TIMESTAMP, processing_date TIMESTAMP DEFAULT CURRENT_TIMESTAMP, status VARCHAR(50) DEFAULT 'pending', validation_score FLOAT, metadata JSONB, extracted_data JSONB, validation_details JSONB, error_message TEXT, created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP, updated_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP )"
    );
    assert_eq!(plan[0]["statements"][0]["line"], 5);
    // Nothing exists yet, so nobody is blocked by anything.
    for m in plan {
        for s in m["statements"].as_array().unwrap() {
            assert_eq!(s["locks"], json!([]), "{s}");
        }
    }
    assert_eq!(plan[1]["in_transaction"], false);
    Ok(())
}
