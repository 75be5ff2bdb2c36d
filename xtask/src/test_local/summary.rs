//! One readable line per report: what happened to migrations, objects, tables and indexes.

use serde_json::Value;

/// One readable line per report: what happened to migrations, objects, tables and indexes.
pub fn summarize(payload: &Value) -> String {
    if let Some(error_type) = payload["errorType"].as_str() {
        return format!(
            "error {error_type}: {}",
            payload["errorMessage"].as_str().unwrap_or("")
        );
    }
    let list = |key: &str| payload[key].as_array().cloned().unwrap_or_default();
    let migrations: Vec<String> = list("migrations")
        .iter()
        .map(|m| {
            format!(
                "{:04} {} {}",
                m["version"].as_u64().unwrap_or(0),
                m["name"].as_str().unwrap_or("?"),
                m["state"].as_str().unwrap_or("?")
            )
        })
        .collect();
    let mut outcomes: Vec<(String, usize)> = Vec::new();
    for o in list("objects") {
        let outcome = o["outcome"].as_str().unwrap_or("?").to_string();
        match outcomes.iter_mut().find(|(k, _)| *k == outcome) {
            Some((_, n)) => *n += 1,
            None => outcomes.push((outcome, 1)),
        }
    }
    let objects: Vec<String> = outcomes.iter().map(|(k, n)| format!("{n} {k}")).collect();
    let tables: Vec<String> = list("tables")
        .iter()
        .map(|t| match t["rows"].as_i64() {
            Some(rows) if t["rows_exact"] == false => {
                format!(
                    "{} (~{rows} rows, estimate)",
                    t["name"].as_str().unwrap_or("?")
                )
            }
            Some(rows) => format!("{} ({rows} rows)", t["name"].as_str().unwrap_or("?")),
            None => format!("{} (missing)", t["name"].as_str().unwrap_or("?")),
        })
        .collect();
    let indexes = list("indexes");
    let present = indexes.iter().filter(|i| i["present"] == true).count();
    let plan = crate::plan_view::render(payload, "    ");
    format!(
        "{} {}: migrations [{}]; objects: {}; tables: {}; indexes {present}/{} present; server {}{}{}",
        payload["status"].as_str().unwrap_or("?"),
        payload["action"].as_str().unwrap_or("?"),
        migrations.join(", "),
        if objects.is_empty() {
            "none".to_string()
        } else {
            objects.join(", ")
        },
        tables.join(", "),
        indexes.len(),
        payload["server_version"].as_str().unwrap_or("?"),
        if plan.is_empty() { "" } else { "\n" },
        plan.trim_end(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn summarizes_reports_and_errors() {
        let err = json!({"errorType": "Auth", "errorMessage": "password authentication failed"});
        assert_eq!(
            summarize(&err),
            "error Auth: password authentication failed"
        );
        let report = json!({"status": "ok", "action": "apply",
            "migrations": [{"version": 1, "name": "initial_schema", "state": "applied"}],
            "objects": [{"outcome": "created"}, {"outcome": "created"}],
            "tables": [{"name": "documents", "rows": 0}],
            "indexes": [{"present": true}], "server_version": "17.6"});
        assert_eq!(
            summarize(&report),
            "ok apply: migrations [0001 initial_schema applied]; objects: 2 created; \
             tables: documents (0 rows); indexes 1/1 present; server 17.6"
        );
    }
}
