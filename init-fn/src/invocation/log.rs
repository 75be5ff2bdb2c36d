//! The one subscriber setup: Lambda's logging controls (`AWS_LAMBDA_LOG_FORMAT` JSON or Text,
//! `AWS_LAMBDA_LOG_LEVEL` with Lambda's level names) applied to init-fn's own lines, library crates
//! at WARN, and the writer of each line: today's text, or one JSON object with `requestId`.

use std::{
    fmt::Write as _,
    io::Write,
    sync::Mutex,
    time::{SystemTime, UNIX_EPOCH},
};

use tracing::{
    Event, Level, Metadata, Subscriber,
    field::{Field, Visit},
    level_filters::LevelFilter,
    span,
};
use tracing_subscriber::{
    layer::{Context, SubscriberExt},
    registry::LookupSpan,
    util::SubscriberInitExt,
};

use crate::error::InitError;

/// How each line is written (`AWS_LAMBDA_LOG_FORMAT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `LEVEL message field=value …`, as before Lambda's logging controls existed.
    Text,
    /// One JSON object a line: `timestamp`, `level`, `message`, `requestId`, then the event's fields.
    Json,
}

/// The logging settings of this process, read once at cold start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub format: Format,
    /// init-fn's own lines; library crates never go below WARN.
    pub level: LevelFilter,
    /// A variable's value that was not understood, named once in the log at startup.
    pub notices: Vec<String>,
}

/// The level names Lambda uses for `AWS_LAMBDA_LOG_LEVEL`, in the order its documentation lists them.
const LEVEL_NAMES: &str = "TRACE, DEBUG, INFO, WARN, ERROR, FATAL";

/// The runtime's own Rust `Debug` line of a failed invocation, replaced by [`failure`].
const RUNTIME_ERROR_TARGET: &str = "lambda_runtime::layers::panic";

/// The span the runtime opens per invocation; its `requestId` goes on every JSON line inside it.
const INVOCATION_SPAN: &str = "Lambda runtime invoke";

impl Settings {
    /// Reads the process environment.
    pub fn from_env() -> Settings {
        Settings::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the two variables through `lookup`; an unset or empty variable is its default.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Settings {
        let get = |name: &str| {
            lookup(name)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let mut notices = Vec::new();
        let format = match get("AWS_LAMBDA_LOG_FORMAT") {
            None => Format::Text,
            Some(v) if v.eq_ignore_ascii_case("json") => Format::Json,
            Some(v) if v.eq_ignore_ascii_case("text") => Format::Text,
            Some(v) => {
                notices.push(format!(
                    "AWS_LAMBDA_LOG_FORMAT={v:?} is not JSON or Text; writing text lines"
                ));
                Format::Text
            }
        };
        let level = match get("AWS_LAMBDA_LOG_LEVEL") {
            None => LevelFilter::INFO,
            Some(v) => match v.to_ascii_uppercase().as_str() {
                "TRACE" => LevelFilter::TRACE,
                "DEBUG" => LevelFilter::DEBUG,
                "INFO" => LevelFilter::INFO,
                "WARN" => LevelFilter::WARN,
                // init-fn has no level above ERROR: its failures are its most severe lines.
                "ERROR" | "FATAL" => LevelFilter::ERROR,
                _ => {
                    notices.push(format!(
                        "AWS_LAMBDA_LOG_LEVEL={v:?} is not one of {LEVEL_NAMES}; logging at INFO"
                    ));
                    LevelFilter::INFO
                }
            },
        };
        Settings {
            format,
            level,
            notices,
        }
    }
}

/// Installs the process-wide subscriber writing to stdout, then names each notice once.
pub fn init(settings: &Settings) {
    let lines = Lines::new(settings, Box::new(std::io::stdout()));
    for notice in &settings.notices {
        lines.notice(notice);
    }
    tracing_subscriber::registry().with(lines).init();
}

/// The failed invocation's one line: the same text Lambda returns as `errorMessage`, `errorType` beside it.
pub fn failure(err: &InitError) {
    tracing::error!(errorType = %err.error_type(), "{}", err.one_line());
}

/// The layer that filters and writes every line (the only one the subscriber has).
pub struct Lines {
    format: Format,
    own: LevelFilter,
    libraries: LevelFilter,
    out: Mutex<Box<dyn Write + Send>>,
    clock: fn() -> SystemTime,
}

impl Lines {
    pub fn new(settings: &Settings, out: Box<dyn Write + Send>) -> Lines {
        Lines {
            format: settings.format,
            own: settings.level,
            // Quieter when asked (ERROR), never noisier than WARN: the SDK's debug output runs to pages.
            libraries: settings.level.min(LevelFilter::WARN),
            out: Mutex::new(out),
            clock: SystemTime::now,
        }
    }

    /// The same layer with a fixed clock, for tests of the exact lines.
    pub fn with_clock(mut self, clock: fn() -> SystemTime) -> Lines {
        self.clock = clock;
        self
    }

    /// A WARN line written whatever the level, outside any invocation.
    fn notice(&self, text: &str) {
        let fields = Fields {
            message: text.to_string(),
            list: Vec::new(),
        };
        self.write(Level::WARN, &fields, None);
    }

    fn wants(&self, meta: &Metadata<'_>) -> bool {
        if meta.is_span() {
            return meta.name() == INVOCATION_SPAN;
        }
        // The runtime logs a handler's error as its `Debug` (only a message field); a panic keeps its line.
        if meta.target() == RUNTIME_ERROR_TARGET
            && meta.fields().iter().all(|f| f.name() == "message")
        {
            return false;
        }
        let own = meta.target() == "init_fn" || meta.target().starts_with("init_fn::");
        let limit = if own { self.own } else { self.libraries };
        *meta.level() <= limit
    }

    fn write(&self, level: Level, fields: &Fields, request_id: Option<&str>) {
        let mut line = match self.format {
            Format::Text => text_line(level, fields),
            Format::Json => json_line((self.clock)(), level, fields, request_id),
        };
        line.push('\n');
        let mut out = self.out.lock().unwrap_or_else(|e| e.into_inner());
        // A log line that cannot be written is not a reason to fail the invocation.
        let _ = out.write_all(line.as_bytes()).and_then(|()| out.flush());
    }
}

/// The invocation's request id, kept on the runtime's span.
struct RequestId(String);

impl<S> tracing_subscriber::Layer<S> for Lines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn enabled(&self, meta: &Metadata<'_>, _ctx: Context<'_, S>) -> bool {
        self.wants(meta)
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        // INFO at least: the runtime's invocation span is an info span.
        Some(self.own.max(LevelFilter::INFO))
    }

    fn on_new_span(&self, attrs: &span::Attributes<'_>, id: &span::Id, ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        attrs.record(&mut fields);
        let Some((_, Value::Str(request_id))) =
            fields.list.into_iter().find(|(k, _)| *k == "requestId")
        else {
            return;
        };
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(RequestId(request_id));
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let request_id = ctx.event_scope(event).and_then(|scope| {
            scope
                .into_iter()
                .find_map(|span| span.extensions().get::<RequestId>().map(|r| r.0.clone()))
        });
        self.write(*event.metadata().level(), &fields, request_id.as_deref());
    }
}

/// One recorded value, kept as its kind so JSON gets numbers and booleans, not strings.
#[derive(Debug, Clone, PartialEq)]
enum Value {
    /// `field = "str"`: quoted in text lines.
    Str(String),
    /// `%display`, `?debug` and errors: written as they print.
    Shown(String),
    I64(i64),
    U64(u64),
    F64(f64),
    Bool(bool),
}

#[derive(Default)]
struct Fields {
    message: String,
    list: Vec<(&'static str, Value)>,
}

impl Fields {
    fn push(&mut self, field: &Field, value: Value) {
        self.list.push((field.name(), value));
    }
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let shown = format!("{value:?}");
        if field.name() == "message" {
            self.message = shown;
        } else {
            self.push(field, Value::Shown(shown));
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message = value.to_string();
        } else {
            self.push(field, Value::Str(value.to_string()));
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.push(field, Value::I64(value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.push(field, Value::U64(value));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.push(field, Value::F64(value));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.push(field, Value::Bool(value));
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        // The causes in words, never the error's Debug.
        self.push(field, Value::Shown(crate::error::chain(value)));
    }
}

/// `" INFO message a=1 b=\"x\""`: the line tracing-subscriber's plain formatter wrote before.
fn text_line(level: Level, fields: &Fields) -> String {
    let mut line = format!("{level:>5} {}", fields.message);
    for (name, value) in &fields.list {
        if !line.ends_with(' ') {
            line.push(' ');
        }
        let _ = match value {
            Value::Str(s) => write!(line, "{name}={s:?}"),
            Value::Shown(s) => write!(line, "{name}={s}"),
            Value::I64(n) => write!(line, "{name}={n}"),
            Value::U64(n) => write!(line, "{name}={n}"),
            Value::F64(n) => write!(line, "{name}={n}"),
            Value::Bool(b) => write!(line, "{name}={b}"),
        };
    }
    line
}

/// The keys every JSON line starts with; an event field of the same name would make it ambiguous.
const RESERVED: [&str; 4] = ["timestamp", "level", "message", "requestId"];

/// `{"timestamp":…,"level":…,"message":…,"requestId":…, fields…}` on one line.
fn json_line(at: SystemTime, level: Level, fields: &Fields, request_id: Option<&str>) -> String {
    let mut line = String::with_capacity(160);
    line.push('{');
    push_key(&mut line, "timestamp");
    push_string(&mut line, &rfc3339(at));
    push_key(&mut line, "level");
    push_string(&mut line, level.as_str());
    push_key(&mut line, "message");
    push_string(&mut line, &fields.message);
    if let Some(id) = request_id {
        push_key(&mut line, "requestId");
        push_string(&mut line, id);
    }
    let mut seen: Vec<&str> = RESERVED.to_vec();
    for (name, value) in &fields.list {
        if seen.contains(name) {
            continue;
        }
        seen.push(name);
        push_key(&mut line, name);
        let _ = match value {
            Value::Str(s) | Value::Shown(s) => {
                push_string(&mut line, s);
                Ok(())
            }
            Value::I64(n) => write!(line, "{n}"),
            Value::U64(n) => write!(line, "{n}"),
            Value::F64(n) if n.is_finite() => write!(line, "{n}"),
            Value::F64(n) => {
                push_string(&mut line, &n.to_string());
                Ok(())
            }
            Value::Bool(b) => write!(line, "{b}"),
        };
    }
    line.push('}');
    line
}

fn push_key(line: &mut String, key: &str) {
    if !line.ends_with('{') {
        line.push(',');
    }
    push_string(line, key);
    line.push(':');
}

fn push_string(line: &mut String, text: &str) {
    // serde_json's escaping: control characters, quotes and backslashes, valid JSON always.
    line.push_str(&serde_json::Value::from(text).to_string());
}

/// `2026-12-01T10:00:00.123Z`: RFC 3339 in UTC with milliseconds, as Lambda's own JSON lines.
pub fn rfc3339(at: SystemTime) -> String {
    let since = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (year, month, day) = civil_date(secs / 86_400);
    let of_day = secs % 86_400;
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        of_day / 3600,
        of_day % 3600 / 60,
        of_day % 60,
        since.subsec_millis()
    )
}

/// The proleptic Gregorian (year, month, day) of a count of days since 1970-01-01.
fn civil_date(days: u64) -> (u64, u64, u64) {
    // Shift to 0000-03-01 so the leap day is the last day of a year; 146097 days = 400 years.
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z % 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    };
    let year = era * 400 + year_of_era + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
#[path = "log/tests.rs"]
mod tests;
