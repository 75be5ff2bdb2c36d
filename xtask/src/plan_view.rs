//! A report's `plan` section for people: each pending statement with the lock it takes on which
//! table, and that table's size and row estimate (shared by `invoke` and `test-local`).

use std::fmt::Write as _;

use serde_json::Value;

/// One block per pending migration; empty when the report has no plan.
pub fn render(report: &Value, indent: &str) -> String {
    let mut s = String::new();
    for m in report["plan"].as_array().into_iter().flatten() {
        let _ = writeln!(
            s,
            "{indent}plan {:04} {} ({})",
            m["version"].as_u64().unwrap_or(0),
            m["name"].as_str().unwrap_or("?"),
            if m["in_transaction"] == true {
                "in one transaction"
            } else {
                "no transaction: statement by statement"
            }
        );
        for st in m["statements"].as_array().into_iter().flatten() {
            let line = format!("line {}: ", st["line"]);
            let _ = writeln!(s, "{indent}  {line}{}", st["sql"].as_str().unwrap_or("?"));
            let pad = " ".repeat(line.len());
            let locks = st["locks"].as_array().cloned().unwrap_or_default();
            if st["lock_unknown"] == true {
                let _ = writeln!(
                    s,
                    "{indent}  {pad}lock unknown: plan does not classify this kind of statement"
                );
            } else if locks.is_empty() {
                let _ = writeln!(s, "{indent}  {pad}no lock on an existing table");
            }
            for l in locks {
                let rows = match l["rows_estimate"].as_i64() {
                    Some(n) => format!("~{n} rows"),
                    None => "rows unknown (never analyzed)".to_string(),
                };
                let _ = writeln!(
                    s,
                    "{indent}  {pad}{} on {} (blocks {}): {}, {rows}",
                    l["mode"].as_str().unwrap_or("?"),
                    l["table"].as_str().unwrap_or("?"),
                    l["blocks"].as_str().unwrap_or("?"),
                    size(l["size_bytes"].as_i64().unwrap_or(0)),
                );
            }
        }
    }
    s
}

fn size(bytes: i64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn renders_statements_and_locks() {
        let report = json!({"plan": [{"version": 2, "name": "documents_status_index", "in_transaction": false,
            "statements": [{"line": 17, "sql": "CREATE INDEX CONCURRENTLY i ON documents (status)",
              "locks": [{"mode": "SHARE UPDATE EXCLUSIVE", "table": "documents", "blocks": "DDL and VACUUM, not reads or writes",
                         "size_bytes": 3_250_000, "rows_estimate": 20000}]}]}]});
        assert_eq!(
            render(&report, "  "),
            "  plan 0002 documents_status_index (no transaction: statement by statement)\n\
             \x20   line 17: CREATE INDEX CONCURRENTLY i ON documents (status)\n\
             \x20            SHARE UPDATE EXCLUSIVE on documents (blocks DDL and VACUUM, not reads or writes): 3.1 MiB, ~20000 rows\n"
        );
        assert_eq!(render(&json!({"action": "plan"}), ""), "");
        let unknown = json!({"plan": [{"version": 3, "name": "v", "in_transaction": true,
            "statements": [{"line": 1, "sql": "CREATE VIEW v AS SELECT 1", "locks": [], "lock_unknown": true}]}]});
        assert_eq!(
            render(&unknown, ""),
            "plan 0003 v (in one transaction)\n  line 1: CREATE VIEW v AS SELECT 1\n          lock unknown: plan does not classify this kind of statement\n"
        );
        assert_eq!(size(8192), "8.0 KiB");
        assert_eq!(size(100), "100 B");
    }
}
