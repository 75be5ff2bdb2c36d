//! `cargo xtask invoke`: one synchronous invocation with `LogType=Tail`; prints the report (or raw
//! JSON), the decoded log tail, and fails on a FunctionError with its errorType and message.

use std::path::PathBuf;

use anyhow::{Context, bail};
use base64::Engine;
use serde_json::Value;
use xshell::Shell;

use crate::aws::{self, Clients, Settings, SettingsArgs, lambda};
use crate::aws_error::describe;
use crate::log_view::{Event, Filter, View};

/// Invoke the deployed function and print its report and log tail
#[derive(clap::Args, Default)]
pub struct Invoke {
    /// The event's action
    #[arg(long, value_parser = ["apply", "plan", "status", "verify"], conflicts_with = "payload")]
    pub action: Option<String>,
    /// Send this file as the event instead
    #[arg(long, value_name = "FILE")]
    pub payload: Option<PathBuf>,
    /// Print the response payload as raw JSON
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub settings: SettingsArgs,
}

impl Invoke {
    pub fn run(self, _sh: &Shell) -> anyhow::Result<()> {
        let settings = Settings::load(&self.settings)?;
        let event = self.event()?;
        aws::runtime()?.block_on(async {
            let clients = Clients::new(&settings.sdk_config().await);
            let res = invoke(
                &clients,
                &settings.function_name,
                &event,
                &mut std::io::stdout(),
            )
            .await?;
            res.print(self.json, &mut std::io::stdout())?;
            res.into_result().map(drop)
        })
    }

    /// The event to send: `--payload FILE`, else `{"action": ..}` (apply by default).
    pub fn event(&self) -> anyhow::Result<Vec<u8>> {
        match (&self.payload, &self.action) {
            (Some(p), _) => {
                std::fs::read(p).with_context(|| format!("invoke: read {}", p.display()))
            }
            (None, a) => Ok(serde_json::to_vec(
                &serde_json::json!({"action": a.as_deref().unwrap_or("apply")}),
            )?),
        }
    }
}

/// What one invocation returned.
#[derive(Clone, Debug)]
pub struct Invocation {
    pub status_code: i32,
    /// `X-Amz-Function-Error` (`Unhandled` / `Handled`).
    pub function_error: Option<String>,
    pub payload: Vec<u8>,
    /// The decoded `X-Amz-Log-Result` (last 4 KB of the log).
    pub log_tail: Option<String>,
}

impl Invocation {
    pub fn payload_json(&self) -> Option<Value> {
        serde_json::from_slice(&self.payload).ok()
    }

    /// `Err("<errorType>: <errorMessage>")` when the function failed.
    pub fn into_result(self) -> anyhow::Result<Invocation> {
        let Some(kind) = &self.function_error else {
            return Ok(self);
        };
        let v = self.payload_json().unwrap_or_default();
        bail!(
            "invoke: the function failed ({kind}): {}: {}",
            v["errorType"].as_str().unwrap_or("unknown"),
            v["errorMessage"].as_str().unwrap_or("(no message)")
        )
    }

    pub fn print(&self, json: bool, out: &mut dyn std::io::Write) -> anyhow::Result<()> {
        if let Some(tail) = &self.log_tail {
            writeln!(out, "--- log tail ---")?;
            let mut view = View::new(Filter::default(), false);
            for (n, message) in tail.trim_end().lines().enumerate() {
                let event = Event {
                    id: n.to_string(),
                    timestamp: 0,
                    stream: String::new(),
                    message: message.to_string(),
                };
                for line in view.event(&event) {
                    writeln!(out, "{line}")?;
                }
            }
            writeln!(out, "---")?;
        }
        if json {
            writeln!(out, "{}", String::from_utf8_lossy(&self.payload))?;
            return Ok(());
        }
        match (self.payload_json(), &self.function_error) {
            (Some(v), Some(kind)) => writeln!(
                out,
                "FunctionError ({kind}): {}: {}",
                v["errorType"].as_str().unwrap_or("unknown"),
                v["errorMessage"].as_str().unwrap_or("(no message)")
            )?,
            (Some(v), None) => write!(out, "{}", summary(&v))?,
            (None, _) => writeln!(out, "{}", String::from_utf8_lossy(&self.payload))?,
        }
        Ok(())
    }
}

/// The report in a few readable lines; anything that is not a report is printed as JSON.
pub fn summary(v: &Value) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let Some(action) = v["action"].as_str() else {
        return format!("{}\n", serde_json::to_string_pretty(v).unwrap_or_default());
    };
    let _ = writeln!(
        s,
        "{} {action} on {} (PostgreSQL {}) in {} ms",
        v["status"].as_str().unwrap_or("?"),
        v["database"].as_str().unwrap_or("?"),
        v["server_version"].as_str().unwrap_or("?"),
        v["duration_ms"]
    );
    for m in v["migrations"].as_array().into_iter().flatten() {
        let _ = writeln!(
            s,
            "  migration {:04} {:<24} {}",
            m["version"].as_u64().unwrap_or(0),
            m["name"].as_str().unwrap_or("?"),
            m["state"].as_str().unwrap_or("?")
        );
    }
    s.push_str(&xtask::plan_view::render(v, "  "));
    for o in v["objects"].as_array().into_iter().flatten() {
        let _ = writeln!(
            s,
            "  {:<5} {:<28} {}",
            o["kind"].as_str().unwrap_or("?"),
            o["name"].as_str().unwrap_or("?"),
            o["outcome"].as_str().unwrap_or("?")
        );
    }
    for t in v["tables"].as_array().into_iter().flatten() {
        let _ = writeln!(
            s,
            "  rows  {:<28} {}",
            t["name"].as_str().unwrap_or("?"),
            t["rows"]
        );
    }
    for i in v["indexes"].as_array().into_iter().flatten() {
        let _ = writeln!(
            s,
            "  index {:<28} {}",
            i["name"].as_str().unwrap_or("?"),
            if i["present"].as_bool() == Some(true) {
                "present"
            } else {
                "MISSING"
            }
        );
    }
    s
}

/// `Invoke` with `LogType=Tail` (the caller decides what a FunctionError means). A function still
/// Pending or updating (409) is waited for; throttling (429) is retried within the policy's budget.
pub async fn invoke(
    c: &Clients,
    function: &str,
    event: &[u8],
    out: &mut dyn std::io::Write,
) -> anyhow::Result<Invocation> {
    let req = c
        .lambda
        .invoke()
        .function_name(function)
        .log_type(lambda::types::LogType::Tail)
        .payload(lambda::primitives::Blob::new(event));
    let out = crate::retry::lambda_call(&c.lambda, &c.policy, function, "Invoke", out, || {
        req.clone().send()
    })
    .await
    .with_context(|| format!("invoke {function}"))?
    .map_err(|e| {
        let throttled = e
            .as_service_error()
            .is_some_and(|e| e.is_too_many_requests_exception());
        anyhow::anyhow!(
            "invoke {function} (lambda Invoke): {}{}",
            describe(&e),
            if throttled {
                "; Lambda is throttling this function (its concurrency or the account's is \
                     used up): try again later"
            } else {
                ""
            }
        )
    })?;
    let log_tail = match out.log_result() {
        Some(b64) => Some(
            String::from_utf8_lossy(
                &base64::engine::general_purpose::STANDARD
                    .decode(b64)
                    .context("invoke: X-Amz-Log-Result is not base64")?,
            )
            .into_owned(),
        ),
        None => None,
    };
    Ok(Invocation {
        status_code: out.status_code(),
        function_error: out.function_error().map(str::to_string),
        payload: out
            .payload()
            .map(|p| p.as_ref().to_vec())
            .unwrap_or_default(),
        log_tail,
    })
}
