//! The scenario's reports against insta-format snapshots in `tests/snapshots/`: volatile fields
//! redacted, compared, and written only when asked (never under CI).

use std::path::PathBuf;

use anyhow::bail;
use serde_json::{Value, json};

use super::scenario::DATABASE;

/// The snapshot directory, `tests/snapshots/`.
pub fn snapshot_dir() -> PathBuf {
    crate::project_root().join("tests/snapshots")
}

/// The volatile parts of a payload replaced: durations, server version, timestamps, the
/// server's port in error messages; a URL run's database name becomes `documents_db`.
pub fn redact(payload: &Value, database: &str, port: u16) -> Value {
    let mut v = payload.clone();
    if let Some(obj) = v.as_object_mut() {
        if let Some(message) = obj.get("errorMessage").and_then(Value::as_str) {
            let message = message
                .replace(&format!(":{port}/"), ":[port]/")
                .replace(&format!(":{port} "), ":[port] ")
                .replace(database, DATABASE);
            obj.insert("errorMessage".into(), json!(message));
        }
        if obj.get("duration_ms").is_some_and(Value::is_number) {
            obj.insert("duration_ms".into(), json!("[ms]"));
        }
        if obj.contains_key("server_version") {
            obj.insert("server_version".into(), json!("[version]"));
        }
        if obj.get("database").and_then(Value::as_str) == Some(database) {
            obj.insert("database".into(), json!(DATABASE));
        }
        if let Some(migrations) = obj.get_mut("migrations").and_then(Value::as_array_mut) {
            for m in migrations {
                if m.get("duration_ms").is_some_and(Value::is_number) {
                    m["duration_ms"] = json!("[ms]");
                }
            }
        }
    }
    redact_timestamps(&mut v);
    v
}

fn redact_timestamps(v: &mut Value) {
    match v {
        Value::Object(map) => {
            for (k, val) in map.iter_mut() {
                if k == "applied_at" && !val.is_null() {
                    *val = json!("[timestamp]");
                } else {
                    redact_timestamps(val);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact_timestamps),
        _ => {}
    }
}

/// What to do with a snapshot that differs or is missing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SnapshotMode {
    /// Fail; write `NAME.snap.new` for `cargo insta review` (not under CI).
    Check,
    /// Write `NAME.snap` (refused under CI).
    Update,
    /// Compare only; write nothing.
    Compare,
}

/// The result of comparing one step with its snapshot.
pub enum SnapshotResult {
    Matched,
    Written,
    Mismatch { diff: String },
    Missing,
}

/// File name of a step's snapshot: `test_local__<step>.snap`.
pub fn snapshot_path(step: &str) -> PathBuf {
    snapshot_dir().join(format!("test_local__{step}.snap"))
}

/// Compare `value` with the insta-format snapshot of `step` (pretty JSON after the header).
pub fn check_snapshot(
    step: &str,
    value: &Value,
    mode: SnapshotMode,
) -> anyhow::Result<SnapshotResult> {
    let path = snapshot_path(step);
    let new_path = path.with_extension("snap.new");
    let body = serde_json::to_string_pretty(value)?;
    let file = format!(
        "---\nsource: xtask/src/test_local.rs\nexpression: \"test-local step {step}\"\n---\n{body}\n"
    );
    let existing = std::fs::read_to_string(&path).ok();
    let old_body = existing.as_deref().map(snapshot_body);
    if old_body.as_deref() == Some(body.trim_end()) {
        let _ = std::fs::remove_file(&new_path);
        return Ok(SnapshotResult::Matched);
    }
    if mode == SnapshotMode::Update {
        if crate::is_ci() {
            bail!("test-local: refusing to write snapshots under CI");
        }
        std::fs::create_dir_all(snapshot_dir())?;
        std::fs::write(&path, file)?;
        let _ = std::fs::remove_file(&new_path);
        return Ok(SnapshotResult::Written);
    }
    if mode == SnapshotMode::Check && !crate::is_ci() {
        std::fs::write(&new_path, &file)?;
    }
    Ok(match old_body {
        None => SnapshotResult::Missing,
        Some(old) => SnapshotResult::Mismatch {
            diff: similar::TextDiff::from_lines(old.as_str(), body.trim_end())
                .unified_diff()
                .context_radius(3)
                .header("snapshot", "this run")
                .to_string(),
        },
    })
}

/// The content of an insta snapshot file (after the `---` header).
fn snapshot_body(file: &str) -> String {
    let rest = file.strip_prefix("---\n").unwrap_or(file);
    match rest.split_once("\n---\n") {
        Some((_, body)) => body.trim_end().to_string(),
        None => rest.trim_end().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_volatile_fields() {
        let report = json!({
            "status": "ok", "action": "apply", "database": "init_fn_test_ab12cd34",
            "migrations": [{"version": 1, "duration_ms": 12, "applied_at": "2026-01-01"},
                           {"version": 2, "duration_ms": null}],
            "server_version": "17.6", "duration_ms": 40
        });
        let r = redact(&report, "init_fn_test_ab12cd34", 5432);
        assert_eq!(r["database"], "documents_db");
        assert_eq!(r["duration_ms"], "[ms]");
        assert_eq!(r["server_version"], "[version]");
        assert_eq!(r["migrations"][0]["duration_ms"], "[ms]");
        assert_eq!(r["migrations"][0]["applied_at"], "[timestamp]");
        assert_eq!(r["migrations"][1]["duration_ms"], Value::Null);
        // Field order is kept (the contract's order).
        let keys: Vec<&String> = r.as_object().unwrap().keys().collect();
        assert_eq!(keys[0], "status");

        let error = json!({"errorType": "Auth", "errorMessage": "localhost:32806/init_fn_test_ab12cd34: failed"});
        assert_eq!(
            redact(&error, "init_fn_test_ab12cd34", 32806)["errorMessage"],
            "localhost:[port]/documents_db: failed"
        );
    }

    #[test]
    fn reads_insta_snapshot_bodies() {
        let file = "---\nsource: x\nexpression: y\n---\n{\n  \"a\": 1\n}\n";
        assert_eq!(snapshot_body(file), "{\n  \"a\": 1\n}");
    }
}
