//! AWS's Runtime Interface Emulator (`aws-lambda-rie`, what `sam local` runs) as a second runtime
//! for the same bootstrap: fetched once from the `aws-sam-cli` wheel into `.venv/rie/`, one RIE
//! process per function (RIE itself spawns, times out and restarts the bootstrap), invoked over its
//! Invoke API. Its answers become the same [`Invocation`]s the project's emulator produces.

use std::ffi::OsString;
use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use crate::local::bootstrap::{self, lambda_env, vm_hwm_kb};
use crate::local::invocation::{FunctionSpec, INIT_LIMIT, Invocation, Outcome};

/// The wheel the RIE binaries come from (pinned: its RIE is the one the snapshots were checked with).
pub const SAM_CLI_WHEEL: &str = "aws-sam-cli==1.170.0";
/// Where RIE serves Lambda's Invoke API for its single function.
pub const INVOKE_PATH: &str = "/2015-03-31/functions/function/invocations";
/// RIE's answer body when the function overran (plain text, not JSON).
const TIMED_OUT: &str = "Task timed out after ";

/// `.venv/rie/aws-lambda-rie-<host arch>`, fetched from PyPI's `aws-sam-cli` wheel when missing
/// (both binaries are extracted; the arm64 one is there for arm64 hosts).
pub fn ensure_rie() -> anyhow::Result<PathBuf> {
    let dir = crate::project_root().join(".venv/rie");
    let binary = dir.join(host_binary_name()?);
    if binary.is_file() {
        return Ok(binary);
    }
    eprintln!(
        "rie: {} not found; fetching it from the {SAM_CLI_WHEEL} wheel (PyPI) into .venv/rie",
        binary.file_name().unwrap_or_default().to_string_lossy()
    );
    fetch_from_wheel(&dir).context(
        "rie: could not fetch aws-lambda-rie (needs python3 and PyPI; \
         or put the binary at .venv/rie/aws-lambda-rie-<arch> yourself)",
    )?;
    anyhow::ensure!(
        binary.is_file(),
        "rie: the wheel has no {}",
        binary.display()
    );
    Ok(binary)
}

fn host_binary_name() -> anyhow::Result<&'static str> {
    Ok(match std::env::consts::ARCH {
        "x86_64" => "aws-lambda-rie-x86_64",
        "aarch64" => "aws-lambda-rie-arm64",
        other => bail!("rie: no aws-lambda-rie build for a {other} host"),
    })
}

fn fetch_from_wheel(dir: &Path) -> anyhow::Result<()> {
    let sh = xshell::Shell::new()?;
    let venv = crate::project_root().join(".venv");
    let pip = venv.join("bin/pip");
    if !pip.exists() {
        xshell::cmd!(sh, "python3 -m venv {venv}").run()?;
    }
    let download = tempfile::tempdir()?;
    let to = download.path();
    xshell::cmd!(
        sh,
        "{pip} download --quiet --no-deps --disable-pip-version-check {SAM_CLI_WHEEL} -d {to}"
    )
    .run()?;
    let wheel = std::fs::read_dir(to)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "whl"))
        .context("pip download left no wheel")?;
    let mut archive = zip::ZipArchive::new(std::fs::File::open(&wheel)?)?;
    std::fs::create_dir_all(dir)?;
    for name in ["aws-lambda-rie-x86_64", "aws-lambda-rie-arm64"] {
        let mut entry = archive
            .by_name(&format!("samcli/local/rapid/{name}"))
            .with_context(|| format!("{} has no samcli/local/rapid/{name}", wheel.display()))?;
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes)?;
        // Write then rename: a concurrent run never sees half a binary.
        let partial = dir.join(format!("{name}.{}", std::process::id()));
        std::fs::write(&partial, &bytes)?;
        std::fs::set_permissions(
            &partial,
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )?;
        std::fs::rename(&partial, dir.join(name))?;
    }
    Ok(())
}

/// A function served by one `aws-lambda-rie` process; RIE starts the bootstrap on the first
/// invocation and again after a timeout or crash, as the emulator does.
pub struct RieFunction {
    spec: FunctionSpec,
    rie: PathBuf,
    process: Option<RieProcess>,
}

struct RieProcess {
    child: tokio::process::Child,
    invoke_addr: SocketAddr,
    log: mpsc::UnboundedReceiver<String>,
    /// Holds the wrapper script (qemu) for as long as RIE may run it.
    _wrapper_dir: Option<tempfile::TempDir>,
}

impl RieFunction {
    /// Check the bootstrap and find (or fetch) RIE; RIE starts on the first invocation.
    pub async fn start(spec: FunctionSpec) -> anyhow::Result<RieFunction> {
        anyhow::ensure!(
            spec.bootstrap.is_file(),
            "rie: bootstrap {} does not exist",
            spec.bootstrap.display()
        );
        let rie = tokio::task::spawn_blocking(ensure_rie).await??;
        Ok(RieFunction {
            spec,
            rie,
            process: None,
        })
    }

    pub fn spec(&self) -> &FunctionSpec {
        &self.spec
    }

    /// The pid of RIE's live bootstrap process, if one is warm.
    pub fn pid(&self) -> Option<u32> {
        let rie = self.process.as_ref()?.child.id()?;
        children(rie).into_iter().next()
    }

    /// Stop RIE and its bootstrap.
    pub async fn shutdown(&mut self) {
        if let Some(mut process) = self.process.take() {
            let _ = process.child.kill().await;
        }
    }

    /// Send one event through RIE's Invoke API and wait for the outcome.
    pub async fn invoke(&mut self, payload: Value) -> anyhow::Result<Invocation> {
        let started = Instant::now();
        if self.process.is_none() {
            self.process = Some(RieProcess::spawn(&self.rie, &self.spec).await?);
        }
        let process = self.process.as_mut().expect("rie just started");
        // Output that came after the previous invocation's REPORT is not this invocation's.
        while process.log.try_recv().is_ok() {}

        let limit = self.spec.timeout + INIT_LIMIT + Duration::from_secs(10);
        let body = serde_json::to_vec(&payload)?;
        let (status, answer) =
            tokio::time::timeout(limit, post(process.invoke_addr, INVOKE_PATH, &body))
                .await
                .context("rie: no answer from the Invoke API")?
                .context("rie: invoke")?;
        let total = started.elapsed();
        let rss_kb = process
            .child
            .id()
            .and_then(|pid| children(pid).into_iter().next())
            .and_then(vm_hwm_kb);
        let log = process.read_log(status == 200).await;

        let outcome = outcome(status, &answer);
        let request_id = log
            .lines()
            .find_map(|l| l.strip_prefix("START RequestId: "))
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_default()
            .to_string();
        let report = log.lines().find(|l| l.starts_with("REPORT RequestId: "));
        let report_ms = |field: &str| {
            report?
                .split('\t')
                .find_map(|f| f.strip_prefix(field))
                .and_then(|v| v.trim_end_matches(" ms").parse::<f64>().ok())
                .map(|ms| Duration::from_secs_f64(ms / 1000.0))
        };
        let cold = log.contains("INIT START(");
        Ok(Invocation {
            request_id,
            duration: report_ms("Duration: ").unwrap_or(total),
            init_duration: if cold {
                report_ms("Init Duration: ")
            } else {
                None
            },
            max_rss_kb: rss_kb,
            log,
            outcome,
            total,
            cold,
        })
    }
}

impl Drop for RieFunction {
    fn drop(&mut self) {
        if let Some(process) = &mut self.process {
            let _ = process.child.start_kill();
        }
    }
}

impl RieProcess {
    async fn spawn(rie: &Path, spec: &FunctionSpec) -> anyhow::Result<RieProcess> {
        let invoke_addr = free_local_addr()?;
        let runtime_api = free_local_addr()?;
        // RIE runs one program with no arguments: a wrapper (qemu) becomes a script.
        let (bootstrap, wrapper_dir) = match &spec.wrapper {
            Some(wrapper) if !wrapper.is_empty() => {
                let dir = tempfile::tempdir()?;
                let script = dir.path().join("bootstrap");
                let words: Vec<String> = wrapper
                    .iter()
                    .map(String::as_str)
                    .chain([spec
                        .bootstrap
                        .to_str()
                        .context("bootstrap path is not UTF-8")?])
                    .map(shell_quote)
                    .collect();
                std::fs::write(
                    &script,
                    format!("#!/bin/sh\nexec {} \"$@\"\n", words.join(" ")),
                )?;
                std::fs::set_permissions(
                    &script,
                    std::os::unix::fs::PermissionsExt::from_mode(0o755),
                )?;
                (script, Some(dir))
            }
            _ => (spec.bootstrap.clone(), None),
        };
        let mut env = lambda_env(spec, &runtime_api.to_string());
        env.retain(|(k, _)| k != "AWS_LAMBDA_RUNTIME_API"); // RIE sets its own
        // RIE's only timeout setting: whole seconds.
        let timeout_s = spec.timeout.as_secs_f64().ceil().max(1.0) as u64;
        env.push(("AWS_LAMBDA_FUNCTION_TIMEOUT".into(), timeout_s.to_string()));
        let args: Vec<OsString> = vec![
            "--runtime-interface-emulator-address".into(),
            invoke_addr.to_string().into(),
            "--runtime-api-address".into(),
            runtime_api.to_string().into(),
            bootstrap.into_os_string(),
        ];
        // RIE runs the bootstrap in its own working directory: the bootstrap's.
        let (mut child, log) = bootstrap::spawn(spec, rie, &args, env)
            .with_context(|| format!("rie: spawn {}", rie.display()))?;
        let ready = Instant::now();
        while tokio::net::TcpStream::connect(invoke_addr).await.is_err() {
            if let Some(status) = child.try_wait()? {
                bail!("rie: exited at start ({status})");
            }
            if ready.elapsed() > Duration::from_secs(10) {
                let _ = child.kill().await;
                bail!("rie: Invoke API on {invoke_addr} did not answer within 10 s");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(RieProcess {
            child,
            invoke_addr,
            log,
            _wrapper_dir: wrapper_dir,
        })
    }

    /// RIE's output for the invocation just answered: up to its `REPORT` line (a finished
    /// invocation), else until quiet (a crash or init error has no `REPORT`).
    async fn read_log(&mut self, expect_report: bool) -> String {
        let mut out = String::new();
        let until = tokio::time::Instant::now() + Duration::from_secs(2);
        let quiet = if expect_report {
            Duration::from_secs(2)
        } else {
            Duration::from_millis(200)
        };
        while let Ok(Some(line)) = tokio::time::timeout_at(
            until.min(tokio::time::Instant::now() + quiet),
            self.log.recv(),
        )
        .await
        {
            let report = line.starts_with("REPORT RequestId: ");
            out.push_str(&line);
            if report {
                break;
            }
        }
        out
    }
}

/// What RIE's answer means. RIE passes a function error's body through unchanged with 200 and no
/// `X-Amz-Function-Error`, answers a timeout with a plain-text 200, and a crash or init error
/// with 502 and the error document.
fn outcome(status: u16, body: &[u8]) -> Outcome {
    let text = String::from_utf8_lossy(body);
    let json: Option<Value> = serde_json::from_slice(body).ok();
    let error = json.as_ref().and_then(|v| {
        let obj = v.as_object()?;
        let error_type = obj.get("errorType")?.as_str()?.to_string();
        let only_error_fields = obj
            .keys()
            .all(|k| matches!(k.as_str(), "errorType" | "errorMessage" | "stackTrace"));
        only_error_fields.then(|| {
            let message = obj
                .get("errorMessage")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            (error_type, message)
        })
    });
    match (status, error) {
        (200, _) if text.starts_with(TIMED_OUT) => Outcome::Timeout,
        (200, Some((error_type, error_message))) => Outcome::FunctionError {
            error_type,
            error_message,
        },
        (200, None) => Outcome::Response(json.unwrap_or_else(|| Value::String(text.into_owned()))),
        (_, Some((error_type, error_message))) if error_type == "Runtime.ExitError" => {
            Outcome::Crash {
                status: error_message
                    .split_once("Runtime exited with error: ")
                    .map_or(error_message.clone(), |(_, s)| s.to_string()),
            }
        }
        (_, Some((error_type, error_message))) => Outcome::InitError {
            error_type,
            error_message,
        },
        (status, None) => Outcome::Crash {
            status: format!("RIE answered {status}: {text}"),
        },
    }
}

/// Child pids of `pid` (RIE's bootstrap), from `/proc/PID/task/*/children`.
fn children(pid: u32) -> Vec<u32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .filter_map(Result::ok)
        .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
        .flat_map(|c| {
            c.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect()
}

fn free_local_addr() -> anyhow::Result<SocketAddr> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("rie: bind 127.0.0.1")?;
    Ok(listener.local_addr()?)
}

fn shell_quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', r"'\''"))
}

/// One HTTP/1.1 POST (`Connection: close`): status and body (plain or chunked).
pub async fn post(addr: SocketAddr, path: &str, body: &[u8]) -> anyhow::Result<(u16, Vec<u8>)> {
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body).await?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .context("no end of HTTP headers")?;
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let mut rest = raw[split + 4..].to_vec();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .context("no HTTP status")?;
    let chunked = head.lines().any(|l| {
        l.to_ascii_lowercase()
            .starts_with("transfer-encoding: chunked")
    });
    if chunked {
        rest = dechunk(&rest)?;
    }
    Ok((status, rest))
}

fn dechunk(mut data: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = data
            .windows(2)
            .position(|w| w == b"\r\n")
            .context("bad chunk")?;
        let size_hex = String::from_utf8_lossy(&data[..line_end]);
        let size = usize::from_str_radix(size_hex.split(';').next().unwrap_or("").trim(), 16)?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        anyhow::ensure!(data.len() >= size + 2, "short chunk");
        out.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_rie_answers() {
        assert_eq!(
            outcome(200, b"Task timed out after 2.00 seconds"),
            Outcome::Timeout
        );
        assert_eq!(
            outcome(200, br#"{"errorType":"Auth","errorMessage":"bad"}"#),
            Outcome::FunctionError {
                error_type: "Auth".into(),
                error_message: "bad".into()
            }
        );
        assert_eq!(
            outcome(200, br#"{"status":"ok"}"#),
            Outcome::Response(serde_json::json!({"status": "ok"}))
        );
        assert_eq!(
            outcome(
                502,
                br#"{"errorType":"Runtime.ExitError","errorMessage":"RequestId: x Error: Runtime exited with error: exit status 3"}"#
            ),
            Outcome::Crash {
                status: "exit status 3".into()
            }
        );
        assert_eq!(
            outcome(502, br#"{"errorType":"Config","errorMessage":"DB_HOST"}"#),
            Outcome::InitError {
                error_type: "Config".into(),
                error_message: "DB_HOST".into()
            }
        );
    }

    #[test]
    fn decodes_chunked_bodies() {
        assert_eq!(
            dechunk(b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n").unwrap(),
            b"abcde"
        );
    }
}
