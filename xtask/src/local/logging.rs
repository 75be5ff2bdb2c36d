//! Lambda's logging controls: the `LoggingConfig` format and level names deploy sets, and the two
//! variables Lambda gives a custom runtime for them (`AWS_LAMBDA_LOG_FORMAT`, `AWS_LAMBDA_LOG_LEVEL`),
//! which both local runtimes pass to the bootstrap the same way.

/// `LoggingConfig.LogFormat`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Json,
    Text,
}

/// Lambda's log level names (`ApplicationLogLevel`, `AWS_LAMBDA_LOG_LEVEL`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogLevel {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
    Fatal,
}

impl LogFormat {
    /// The name Lambda's API and variable use.
    pub fn as_str(self) -> &'static str {
        match self {
            LogFormat::Json => "JSON",
            LogFormat::Text => "Text",
        }
    }
}

impl LogLevel {
    /// The name Lambda's API and variable use.
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Trace => "TRACE",
            LogLevel::Debug => "DEBUG",
            LogLevel::Info => "INFO",
            LogLevel::Warn => "WARN",
            LogLevel::Error => "ERROR",
            LogLevel::Fatal => "FATAL",
        }
    }
}

/// A function's logging controls as a local runtime applies them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogControls {
    pub format: LogFormat,
    /// `None`: INFO under JSON (Lambda's default), no variable under Text.
    pub level: Option<LogLevel>,
}

impl LogControls {
    /// The variables Lambda sets from a `LoggingConfig`.
    pub fn variables(&self) -> Vec<(String, String)> {
        let level = match (self.format, self.level) {
            (_, Some(level)) => Some(level),
            (LogFormat::Json, None) => Some(LogLevel::Info),
            (LogFormat::Text, None) => None,
        };
        let mut vars = vec![(
            "AWS_LAMBDA_LOG_FORMAT".to_string(),
            self.format.as_str().to_string(),
        )];
        if let Some(level) = level {
            vars.push((
                "AWS_LAMBDA_LOG_LEVEL".to_string(),
                level.as_str().to_string(),
            ));
        }
        vars
    }
}

/// `--log-format` and `--log-level` of the local commands (`test-local`, `serve`).
#[derive(clap::Args, Clone, Copy, Debug)]
pub struct LogArgs {
    /// The function's log format, as its LoggingConfig would set it
    #[arg(long, value_enum, default_value = "json")]
    pub log_format: LogFormat,
    /// The function's log level (default INFO under JSON)
    #[arg(long, value_enum)]
    pub log_level: Option<LogLevel>,
}

impl LogArgs {
    pub fn controls(&self) -> LogControls {
        LogControls {
            format: self.log_format,
            level: self.log_level,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variables_are_lambdas() {
        let json = LogControls {
            format: LogFormat::Json,
            level: None,
        };
        assert_eq!(
            json.variables(),
            [
                ("AWS_LAMBDA_LOG_FORMAT".to_string(), "JSON".to_string()),
                ("AWS_LAMBDA_LOG_LEVEL".to_string(), "INFO".to_string())
            ]
        );
        let text = LogControls {
            format: LogFormat::Text,
            level: None,
        };
        assert_eq!(
            text.variables(),
            [("AWS_LAMBDA_LOG_FORMAT".to_string(), "Text".to_string())]
        );
    }
}
