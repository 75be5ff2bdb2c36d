//! The scenario's check of an invocation's log under JSON logging: every line init-fn wrote is one
//! JSON object with the invocation's `requestId`, the invocation wrote exactly one EMF document
//! whose counts match the outcome, and a failure is one ERROR line that is the `errorMessage`. The
//! lines and the document, with times, ids and ports redacted, are what the `log_<step>` snapshots hold.

use serde_json::{Value, json};

use crate::local::invocation::{Invocation, Outcome};

/// The steps whose log lines have a snapshot: an apply and a failed run.
pub const SNAPSHOT_STEPS: [&str; 2] = ["apply_fresh", "bad_password"];

/// What a run's lines are checked and redacted against.
pub struct Volatile<'a> {
    pub function_name: &'a str,
    /// The run's database, and the name the snapshots hold instead.
    pub database: &'a str,
    pub canonical_database: &'a str,
    pub port: u16,
}

/// The redacted `{"lines": [...], "emf": {...}}` of `invocation`, or what is wrong with its log.
pub fn check(invocation: &Invocation, volatile: &Volatile<'_>) -> Result<Value, String> {
    let rid = invocation.request_id.as_str();
    let (mut lines, mut documents) = (Vec::new(), Vec::new());
    for line in invocation.log.lines() {
        let trimmed = line.trim_start();
        if !trimmed.starts_with('{') {
            // Lambda's START/END/REPORT and the emulators' own lines; a text line of init-fn is not.
            if ["TRACE ", "DEBUG ", "INFO ", "WARN ", "ERROR "]
                .iter()
                .any(|l| trimmed.starts_with(l))
            {
                return Err(format!("a text line under JSON logging: {line}"));
            }
            continue;
        }
        let v: Value = serde_json::from_str(trimmed)
            .map_err(|e| format!("not one JSON object ({e}): {line}"))?;
        if v["requestId"] != rid {
            return Err(format!(
                "a line without the invocation's requestId {rid}: {line}"
            ));
        }
        if v.get("_aws").is_some() {
            documents.push(v);
        } else if v["timestamp"].is_string() && v["level"].is_string() && v["message"].is_string() {
            lines.push(v);
        } else {
            return Err(format!(
                "a JSON line without timestamp, level, message: {line}"
            ));
        }
    }
    let [emf] = &documents[..] else {
        return Err(format!("{} EMF documents, expected one", documents.len()));
    };
    if emf["FunctionName"] != volatile.function_name {
        return Err(format!("EMF FunctionName is {}", emf["FunctionName"]));
    }
    let errors: Vec<&Value> = lines.iter().filter(|l| l["level"] == "ERROR").collect();
    match &invocation.outcome {
        Outcome::FunctionError {
            error_type,
            error_message,
        } => {
            if (emf["Failed"].as_u64(), emf["ErrorType"].as_str()) != (Some(1), Some(error_type)) {
                return Err(format!(
                    "the EMF document does not count the {error_type} failure: {emf}"
                ));
            }
            let [line] = &errors[..] else {
                return Err(format!(
                    "{} ERROR lines, expected the failure's one",
                    errors.len()
                ));
            };
            if (line["message"].as_str(), line["errorType"].as_str())
                != (Some(error_message), Some(error_type))
            {
                return Err(format!("the ERROR line is not the errorMessage: {line}"));
            }
        }
        _ => {
            if emf["Succeeded"] != 1 || !errors.is_empty() {
                return Err(format!("a success counted or logged as a failure: {emf}"));
            }
        }
    }
    let redacted: Vec<Value> = lines.iter().map(|l| redact(l, rid, volatile)).collect();
    Ok(json!({"lines": redacted, "emf": redact(emf, rid, volatile)}))
}

/// Times, ids, durations, the server's host and port, and a URL run's database name replaced.
fn redact(line: &Value, rid: &str, volatile: &Volatile<'_>) -> Value {
    let port = volatile.port;
    let mut text = line
        .to_string()
        .replace(rid, "[request-id]")
        .replace(&format!(":{port}/"), ":[port]/")
        .replace(&format!(":{port} "), ":[port] ");
    if volatile.database != volatile.canonical_database {
        text = text.replace(volatile.database, volatile.canonical_database);
    }
    let mut v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    for (key, mark) in [
        ("timestamp", "[timestamp]"),
        ("ms", "[ms]"),
        ("host", "[host]"),
        ("port", "[port]"),
        ("Duration", "[ms]"),
    ] {
        if v.get(key).is_some() {
            v[key] = json!(mark);
        }
    }
    if v["_aws"].get("Timestamp").is_some() {
        v["_aws"]["Timestamp"] = json!("[timestamp]");
    }
    v
}
