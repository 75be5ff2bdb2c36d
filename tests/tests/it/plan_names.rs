//! `plan` names objects as PostgreSQL does (issue 24): an index name of 70 characters (the server
//! keeps 63 bytes of it), tables in another schema, quoted names; a table an earlier pending migration
//! of the same plan creates is looked up without error (not built yet: no lock on it, as on a fresh
//! database). Before, the long name made `plan` fail outright with the server's `identifier too long`
//! lost.

use serde_json::{Value, json};
use tests::harness::{self, DB, Harness, states, with_extra};

/// 70 characters; the server cuts it to its first 63 bytes when it creates the index.
const LONG_INDEX: &str = "events_by_document_and_time_of_arrival_for_the_reporting_dashboard_xy";

fn history() -> String {
    format!(
        "CREATE SCHEMA reporting;\n\
         CREATE TABLE reporting.events (id int PRIMARY KEY, document_id int REFERENCES public.documents (id), at timestamptz);\n\
         CREATE INDEX {LONG_INDEX}_z ON reporting.events (document_id, at);\n\
         CREATE SCHEMA \"Reporting Mixed\";\n\
         CREATE TABLE \"Reporting Mixed\".\"Audit Trail\" (id int PRIMARY KEY);\n"
    )
}

fn pending() -> String {
    format!(
        "DROP INDEX reporting.{LONG_INDEX}_z;\n\
         ALTER TABLE reporting.events ADD COLUMN note text;\n\
         INSERT INTO reporting.events (id, document_id) VALUES (1, NULL);\n\
         ALTER TABLE \"Reporting Mixed\".\"Audit Trail\" ADD COLUMN x int;\n\
         CREATE TABLE reporting.fresh (id int);\n"
    )
}

const LATER: &str = "CREATE INDEX fresh_by_id ON reporting.fresh (id);\n";

/// `version:line: MODE on table` for every lock of the plan.
fn locks(plan: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for m in plan.as_array().unwrap() {
        for s in m["statements"].as_array().unwrap() {
            for l in s["locks"].as_array().unwrap() {
                assert!(l["size_bytes"].as_i64().unwrap() > 0, "{l}");
                out.push(format!(
                    "{}:{}: {} on {}",
                    m["version"],
                    s["line"],
                    l["mode"].as_str().unwrap(),
                    l["table"].as_str().unwrap()
                ));
            }
        }
    }
    out
}

#[tokio::test]
async fn plan_reads_long_quoted_and_qualified_names_as_the_server_does() -> anyhow::Result<()> {
    let h = Harness::from_env().await?;
    let history = history();
    let applied = harness::invoke(
        &h.state(&[], with_extra(&[(2, "reporting", &history)])),
        json!({}),
    )
    .await?;
    assert_eq!(applied["status"], "ok", "{applied:#}");
    // The server kept the first 63 bytes of the name.
    let c = h.client(DB).await?;
    let kept: String = c
        .query_one(
            "SELECT relname::text FROM pg_class WHERE relname LIKE 'events_by_document%'",
            &[],
        )
        .await?
        .get(0);
    assert_eq!(kept, format!("{LONG_INDEX}_z")[..63]);

    let pending = pending();
    let migrations = with_extra(&[
        (2, "reporting", &history),
        (3, "reporting_changes", &pending),
        (4, "reporting_fresh_index", LATER),
    ]);
    let report = harness::invoke(&h.state(&[], migrations), json!({"action": "plan"})).await?;
    assert_eq!(
        states(&report),
        ["already_applied", "already_applied", "pending", "pending"]
    );
    assert_eq!(
        locks(&report["plan"]),
        [
            "3:1: ACCESS EXCLUSIVE on reporting.events",
            "3:2: ACCESS EXCLUSIVE on reporting.events",
            "3:3: ROW EXCLUSIVE on reporting.events",
            "3:3: ROW SHARE on documents",
            "3:4: ACCESS EXCLUSIVE on \"Reporting Mixed\".\"Audit Trail\"",
        ],
        "{:#}",
        report["plan"]
    );
    // Migration 4's index is on a table migration 3 creates: planned, nothing to look up yet.
    let later = &report["plan"][1]["statements"];
    assert_eq!(later.as_array().unwrap().len(), 1, "{later}");
    assert_eq!(later[0]["locks"], json!([]), "{later}");
    Ok(())
}
