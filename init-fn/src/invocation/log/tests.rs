use super::*;
use std::time::Duration;

fn settings(vars: &[(&str, &str)]) -> Settings {
    Settings::from_lookup(|name| {
        vars.iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.to_string())
    })
}

#[test]
fn lambda_level_names_and_formats() {
    let default = settings(&[]);
    assert_eq!(
        (default.format, default.level),
        (Format::Text, LevelFilter::INFO)
    );
    assert!(default.notices.is_empty());
    for (value, level) in [
        ("TRACE", LevelFilter::TRACE),
        ("DEBUG", LevelFilter::DEBUG),
        ("INFO", LevelFilter::INFO),
        ("WARN", LevelFilter::WARN),
        ("ERROR", LevelFilter::ERROR),
        ("FATAL", LevelFilter::ERROR),
        ("warn", LevelFilter::WARN),
        ("", LevelFilter::INFO),
    ] {
        let s = settings(&[("AWS_LAMBDA_LOG_LEVEL", value)]);
        assert_eq!(s.level, level, "{value}");
        assert!(s.notices.is_empty(), "{value}: {:?}", s.notices);
    }
    assert_eq!(
        settings(&[("AWS_LAMBDA_LOG_FORMAT", "JSON")]).format,
        Format::Json
    );
    assert_eq!(
        settings(&[("AWS_LAMBDA_LOG_FORMAT", "Text")]).format,
        Format::Text
    );
}

#[test]
fn unknown_values_are_named_not_silently_replaced() {
    let s = settings(&[
        ("AWS_LAMBDA_LOG_LEVEL", "VERBOSE"),
        ("AWS_LAMBDA_LOG_FORMAT", "yaml"),
    ]);
    assert_eq!((s.format, s.level), (Format::Text, LevelFilter::INFO));
    assert_eq!(
        s.notices,
        [
            "AWS_LAMBDA_LOG_FORMAT=\"yaml\" is not JSON or Text; writing text lines",
            "AWS_LAMBDA_LOG_LEVEL=\"VERBOSE\" is not one of TRACE, DEBUG, INFO, WARN, ERROR, FATAL; logging at INFO",
        ]
    );
}

#[test]
fn rfc3339_in_utc_with_milliseconds() {
    // Reference values from `date -u -d @<seconds> +%FT%T`.
    for (secs, millis, expected) in [
        (0, 0, "1970-01-01T00:00:00.000Z"),
        (951_782_400, 5, "2000-02-29T00:00:00.005Z"),
        (1_709_251_199, 999, "2024-02-29T23:59:59.999Z"),
        (1_796_119_200, 123, "2026-12-01T10:00:00.123Z"),
        (4_107_542_400, 0, "2100-03-01T00:00:00.000Z"),
    ] {
        let at = UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_millis(millis);
        assert_eq!(rfc3339(at), expected, "{secs}");
    }
}

#[test]
fn text_line_quotes_strings_only() {
    let fields = Fields {
        message: "connecting".into(),
        list: vec![
            ("host", Value::Shown("localhost".into())),
            ("port", Value::U64(5432)),
            ("sslmode", Value::Str("verify-full".into())),
            ("adopted", Value::Bool(false)),
        ],
    };
    assert_eq!(
        text_line(Level::INFO, &fields),
        " INFO connecting host=localhost port=5432 sslmode=\"verify-full\" adopted=false"
    );
}

#[test]
fn json_line_keeps_kinds_and_skips_reserved_names() {
    let fields = Fields {
        message: "say \"hi\"\n".into(),
        list: vec![
            ("ms", Value::U64(7)),
            ("level", Value::Str("shadow".into())),
            ("ratio", Value::F64(f64::NAN)),
            ("ok", Value::Bool(true)),
        ],
    };
    let line = json_line(UNIX_EPOCH, Level::WARN, &fields, Some("req-1"));
    assert_eq!(
        line,
        r#"{"timestamp":"1970-01-01T00:00:00.000Z","level":"WARN","message":"say \"hi\"\n","requestId":"req-1","ms":7,"ratio":"NaN","ok":true}"#
    );
    let parsed: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(parsed["ms"], 7);
}
