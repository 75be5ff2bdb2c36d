//! How the function's log lines read in a terminal (`logs`, `invoke`'s tail): init-fn's JSON lines
//! as one line each (time, level, short request id, message, fields), text lines as they are,
//! Lambda's START … REPORT around each invocation, and a FAILED line after a failed one's REPORT.

use std::collections::HashMap;

use serde_json::Value;

/// One log event as CloudWatch Logs returns it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub id: String,
    /// Milliseconds since the epoch.
    pub timestamp: i64,
    pub stream: String,
    pub message: String,
}

/// Severity of a line, least severe first (Lambda's names; FATAL is ERROR).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
pub enum Level {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

impl Level {
    fn parse(name: &str) -> Option<Level> {
        match name.to_ascii_uppercase().as_str() {
            "TRACE" => Some(Level::Trace),
            "DEBUG" => Some(Level::Debug),
            "INFO" => Some(Level::Info),
            "WARN" | "WARNING" => Some(Level::Warn),
            "ERROR" | "FATAL" => Some(Level::Error),
            _ => None,
        }
    }
}

/// Which lines to show.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    /// An invocation's request id, or its first characters (the short id the view prints).
    pub request_id: Option<String>,
    /// Application lines below this level are left out; Lambda's own lines never are.
    pub level: Option<Level>,
}

/// What one event is.
enum Line<'a> {
    Start(String),
    End(String),
    Report {
        id: String,
        text: String,
        status: Option<String>,
    },
    /// init-fn's JSON line.
    Json(Value),
    /// An EMF document.
    Metrics(Value),
    Text(&'a str),
}

/// Renders events one at a time, keeping which invocation each log stream is in.
pub struct View {
    filter: Filter,
    /// Print each event's message unchanged (`--json`).
    raw: bool,
    open: HashMap<String, Open>,
    /// Per stream, the request last marked FAILED without a START … REPORT around it.
    marked: HashMap<String, String>,
}

struct Open {
    id: String,
    failure: Option<String>,
}

impl View {
    pub fn new(filter: Filter, raw: bool) -> View {
        View {
            filter,
            raw,
            open: HashMap::new(),
            marked: HashMap::new(),
        }
    }

    /// The lines `event` prints as: none when the filter leaves it out.
    pub fn event(&mut self, event: &Event) -> Vec<String> {
        let message = event.message.trim_end_matches(['\n', '\r']);
        let line = classify(message);
        let id = match &line {
            Line::Start(id) | Line::End(id) | Line::Report { id, .. } => Some(id.clone()),
            Line::Json(v) | Line::Metrics(v) => v["requestId"].as_str().map(str::to_string),
            Line::Text(_) => None,
        }
        .or_else(|| self.open.get(&event.stream).map(|o| o.id.clone()));
        if let Line::Start(id) = &line {
            self.open.insert(
                event.stream.clone(),
                Open {
                    id: id.clone(),
                    failure: None,
                },
            );
        }
        // Without an open START (Lambda's system log level above INFO writes none) a failure is
        // marked where it is seen, once per request.
        let mut loose = None;
        if let Some(failure) = failure_of(&line) {
            match self.open.get_mut(&event.stream) {
                Some(open) if open.failure.is_none() => open.failure = Some(failure),
                Some(_) => {}
                None => loose = Some(failure),
            }
        }
        let closing = matches!(line, Line::Report { .. });
        let shown = self.wanted(&line, id.as_deref());
        let mut out = Vec::new();
        if shown {
            out.push(if self.raw {
                message.to_string()
            } else {
                render(&line, event.timestamp, id.as_deref())
            });
        }
        if let (Some(failure), Some(id), true, false) = (loose, id.as_deref(), shown, self.raw)
            && self.marked.get(&event.stream).map(String::as_str) != Some(id)
        {
            self.marked.insert(event.stream.clone(), id.to_string());
            out.push(format!("FAILED {}: {failure}", short(id)));
        }
        if closing
            && let Some(open) = self.open.remove(&event.stream)
            && let (true, false, Some(failure)) = (shown, self.raw, &open.failure)
        {
            out.push(format!("FAILED {}: {failure}", short(&open.id)));
        }
        out
    }

    fn wanted(&self, line: &Line<'_>, id: Option<&str>) -> bool {
        if let Some(wanted) = &self.filter.request_id
            && !id.is_some_and(|id| id.starts_with(wanted.as_str()))
        {
            return false;
        }
        let Some(min) = self.filter.level else {
            return true;
        };
        let level = match line {
            Line::Json(v) => v["level"].as_str().and_then(Level::parse),
            Line::Metrics(_) => Some(Level::Info),
            Line::Text(t) => t.split_whitespace().next().and_then(Level::parse),
            _ => None,
        };
        level.is_none_or(|l| l >= min)
    }
}

/// Events in the order the view reads best: each stream's invocations contiguous (START … REPORT),
/// invocations by their start; CloudWatch interleaves concurrent streams by time.
pub fn grouped(mut events: Vec<Event>) -> Vec<Event> {
    events.sort_by_key(|e| e.timestamp);
    // The key of each event: when the invocation (or loose run of lines) it belongs to began.
    let mut began: HashMap<&str, i64> = HashMap::new();
    let mut keys = Vec::with_capacity(events.len());
    for e in &events {
        let starts = matches!(classify(e.message.trim_end()), Line::Start(_));
        let key = *began
            .entry(&e.stream)
            .and_modify(|t| {
                if starts {
                    *t = e.timestamp;
                }
            })
            .or_insert(e.timestamp);
        keys.push((key, e.stream.clone()));
    }
    let mut keyed: Vec<_> = keys.into_iter().zip(events).collect();
    keyed.sort_by(|a, b| a.0.cmp(&b.0));
    keyed.into_iter().map(|(_, e)| e).collect()
}

fn classify(message: &str) -> Line<'_> {
    if let Some(rest) = message.strip_prefix("START RequestId: ") {
        return Line::Start(first_word(rest));
    }
    if let Some(rest) = message.strip_prefix("END RequestId: ") {
        return Line::End(first_word(rest));
    }
    if let Some(rest) = message.strip_prefix("REPORT RequestId: ") {
        return Line::Report {
            id: first_word(rest),
            text: message.to_string(),
            status: None,
        };
    }
    if !message.starts_with('{') {
        return Line::Text(message);
    }
    let Ok(v) = serde_json::from_str::<Value>(message) else {
        return Line::Text(message);
    };
    // Lambda's own lines when the function's log format is JSON.
    let record = &v["record"];
    let id = record["requestId"].as_str().map(str::to_string);
    match (v["type"].as_str(), id) {
        (Some("platform.start"), Some(id)) => Line::Start(id),
        (Some("platform.report"), Some(id)) => {
            let m = &record["metrics"];
            let text = format!(
                "REPORT RequestId: {id} Duration: {} ms Billed Duration: {} ms Memory Size: {} MB Max Memory Used: {} MB{}",
                m["durationMs"],
                m["billedDurationMs"],
                m["memorySizeMB"],
                m["maxMemoryUsedMB"],
                m["initDurationMs"]
                    .as_f64()
                    .map(|d| format!(" Init Duration: {d} ms"))
                    .unwrap_or_default()
            );
            let status = record["status"].as_str().map(str::to_string);
            Line::Report { id, text, status }
        }
        (Some(t), Some(id)) if t.starts_with("platform.") && t != "platform.runtimeDone" => {
            Line::End(id)
        }
        _ if v.get("_aws").is_some() => Line::Metrics(v),
        _ => Line::Json(v),
    }
}

fn first_word(text: &str) -> String {
    text.split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string()
}

/// What a line says about its invocation failing: `errorType: message`.
fn failure_of(line: &Line<'_>) -> Option<String> {
    match line {
        Line::Json(v) if v["errorType"].is_string() => Some(format!(
            "{}: {}",
            v["errorType"].as_str().unwrap_or_default(),
            v["message"].as_str().unwrap_or_default()
        )),
        Line::Metrics(v) if v["Failed"].as_u64().is_some_and(|n| n > 0) => {
            Some(v["ErrorType"].as_str().unwrap_or("failed").to_string())
        }
        Line::Text(t) if t.starts_with("ERROR ") => {
            let (message, kind) = t["ERROR ".len()..]
                .rsplit_once(" errorType=")
                .unwrap_or((&t["ERROR ".len()..], "error"));
            Some(format!("{kind}: {message}"))
        }
        Line::Text(t) if t.contains("Task timed out after") => {
            Some(format!("Sandbox.Timedout: {t}"))
        }
        Line::Report {
            status: Some(s), ..
        } if s != "success" => Some(format!("status {s}")),
        _ => None,
    }
}

/// The first 8 characters of a request id: enough to tell invocations apart, and `--request-id` takes it.
fn short(id: &str) -> &str {
    id.get(..8).unwrap_or(id)
}

fn render(line: &Line<'_>, timestamp: i64, id: Option<&str>) -> String {
    match line {
        Line::Start(id) => format!("START RequestId: {id}"),
        Line::End(id) => format!("END RequestId: {id}"),
        Line::Report { text, .. } => text.clone(),
        Line::Text(t) => t.to_string(),
        Line::Json(v) => {
            let time = v["timestamp"]
                .as_str()
                .and_then(|t| t.get(11..23))
                .map_or_else(|| clock(timestamp), str::to_string);
            let mut s = format!(
                "{time} {:<5} {} {}",
                v["level"].as_str().unwrap_or("-"),
                id.map_or("-", short),
                v["message"].as_str().unwrap_or_default()
            );
            for (k, value) in v.as_object().into_iter().flatten() {
                if !["timestamp", "level", "message", "requestId"].contains(&k.as_str()) {
                    match value {
                        Value::String(text) => s.push_str(&format!(" {k}={text}")),
                        other => s.push_str(&format!(" {k}={other}")),
                    }
                }
            }
            s
        }
        Line::Metrics(v) => {
            let at = v["_aws"]["Timestamp"].as_i64().unwrap_or(timestamp);
            let mut s = format!(
                "{} METRICS {} {}",
                clock(at),
                id.map_or("-", short),
                v["Action"].as_str().unwrap_or("-")
            );
            let directives = v["_aws"]["CloudWatchMetrics"].as_array();
            for m in directives
                .into_iter()
                .flatten()
                .flat_map(|d| d["Metrics"].as_array().into_iter().flatten())
            {
                if let Some(name) = m["Name"].as_str() {
                    s.push_str(&format!(" {name}={}", v[name]));
                }
            }
            s
        }
    }
}

/// `HH:MM:SS.mmm` (UTC) of an epoch timestamp in milliseconds.
fn clock(ms: i64) -> String {
    let of_day = ms.rem_euclid(86_400_000);
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        of_day / 3_600_000,
        of_day / 60_000 % 60,
        of_day / 1000 % 60,
        of_day % 1000
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(stream: &str, ts: i64, message: &str) -> Event {
        Event {
            id: format!("{stream}-{ts}"),
            timestamp: ts,
            stream: stream.into(),
            message: message.into(),
        }
    }

    #[test]
    fn without_start_and_report_a_failure_is_marked_once_where_it_is_seen() {
        // Lambda's system log level WARN (deploy's default): no platform lines, only init-fn's.
        let id = "8f5e2a51-0c47-4d1e-9a0b-2f4f1b3c6d7e";
        let error = format!(
            r#"{{"timestamp":"2026-12-01T10:00:00.123Z","level":"ERROR","message":"unknown field `tf`","requestId":"{id}","errorType":"InvalidEvent"}}"#
        );
        let emf = format!(
            r#"{{"_aws":{{"Timestamp":1,"CloudWatchMetrics":[]}},"requestId":"{id}","Action":"apply","Failed":1,"ErrorType":"InvalidEvent"}}"#
        );
        let events = [ev("s", 1, &error), ev("s", 2, &emf)];
        let mut view = View::new(Filter::default(), false);
        let lines: Vec<String> = events.iter().flat_map(|e| view.event(e)).collect();
        assert_eq!(lines.len(), 3, "{lines:?}");
        assert_eq!(
            lines[1],
            "FAILED 8f5e2a51: InvalidEvent: unknown field `tf`"
        );
        assert!(!lines[2].starts_with("FAILED"), "{lines:?}");
    }

    #[test]
    fn a_failed_invocation_is_marked_after_its_report() {
        let id = "8f5e2a51-0c47-4d1e-9a0b-2f4f1b3c6d7e";
        let events = [
            ev("s", 1, &format!("START RequestId: {id} Version: $LATEST")),
            ev(
                "s",
                2,
                &format!(
                    r#"{{"timestamp":"2026-12-01T10:00:00.123Z","level":"ERROR","message":"unknown field `tf`","requestId":"{id}","errorType":"InvalidEvent"}}"#
                ),
            ),
            ev("s", 3, &format!("END RequestId: {id}")),
            ev(
                "s",
                4,
                &format!("REPORT RequestId: {id}\tDuration: 1.00 ms"),
            ),
        ];
        let mut view = View::new(Filter::default(), false);
        let lines: Vec<String> = events.iter().flat_map(|e| view.event(e)).collect();
        assert_eq!(
            lines,
            [
                format!("START RequestId: {id}"),
                "10:00:00.123 ERROR 8f5e2a51 unknown field `tf` errorType=InvalidEvent".to_string(),
                format!("END RequestId: {id}"),
                format!("REPORT RequestId: {id}\tDuration: 1.00 ms"),
                "FAILED 8f5e2a51: InvalidEvent: unknown field `tf`".to_string(),
            ]
        );
    }

    #[test]
    fn level_and_request_id_filters() {
        let mut view = View::new(
            Filter {
                request_id: Some("aaaa".into()),
                level: Some(Level::Warn),
            },
            false,
        );
        let shown: Vec<String> = [
            ev("a", 1, "START RequestId: aaaa-1 Version: $LATEST"),
            ev("a", 2, " INFO connecting host=db"),
            ev("a", 3, " WARN slow"),
            ev("b", 4, "START RequestId: bbbb-2 Version: $LATEST"),
            ev("b", 5, " WARN other"),
        ]
        .iter()
        .flat_map(|e| view.event(e))
        .collect();
        assert_eq!(shown, ["START RequestId: aaaa-1", " WARN slow"]);
    }

    #[test]
    fn streams_are_grouped_by_invocation() {
        let events = vec![
            ev("a", 1, "START RequestId: a1"),
            ev("b", 2, "START RequestId: b1"),
            ev("a", 3, "REPORT RequestId: a1"),
            ev("b", 4, "REPORT RequestId: b1"),
        ];
        let order: Vec<i64> = grouped(events).iter().map(|e| e.timestamp).collect();
        assert_eq!(order, [1, 3, 2, 4]);
        assert_eq!(clock(1_796_119_200_123), "10:00:00.123");
    }
}
