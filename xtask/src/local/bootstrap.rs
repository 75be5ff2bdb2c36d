//! The bootstrap as a child process, the same under both local runtimes: the environment Lambda
//! gives a `provided.al2023` function, the spawn (that environment only, in the bootstrap's
//! directory, stdout and stderr as lines on one channel), and how its exit and memory are worded.

use std::ffi::OsString;
use std::path::Path;
use std::process::Stdio;

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::sync::mpsc;

use super::invocation::FunctionSpec;

/// Spawns `program args` the way Lambda runs a bootstrap: no variable but Lambda's (`env`) and the
/// function's own, in the bootstrap's directory, killed on drop; its output comes line by line.
pub fn spawn(
    spec: &FunctionSpec,
    program: &Path,
    args: &[OsString],
    env: Vec<(String, String)>,
) -> std::io::Result<(tokio::process::Child, mpsc::UnboundedReceiver<String>)> {
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .env_clear()
        .envs(env)
        .envs(spec.env.iter().cloned())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if let Some(dir) = spec.bootstrap.parent().filter(|d| d.is_dir()) {
        cmd.current_dir(dir);
    }
    let mut child = cmd.spawn()?;
    let (log_tx, log_rx) = mpsc::unbounded_channel();
    if let Some(stdout) = child.stdout.take() {
        tokio::spawn(forward_lines(stdout, log_tx.clone()));
    }
    if let Some(stderr) = child.stderr.take() {
        tokio::spawn(forward_lines(stderr, log_tx));
    }
    Ok((child, log_rx))
}

/// How Lambda words a process exit in `Runtime exited with error: …` (Go's `ProcessState`
/// text, as RIE prints it): `exit status 3`, `signal: killed`.
pub fn exit_error(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(signal)) => {
            let name = match signal {
                6 => "aborted".to_string(),
                9 => "killed".to_string(),
                11 => "segmentation fault".to_string(),
                15 => "terminated".to_string(),
                other => format!("signal {other}"),
            };
            format!("signal: {name}")
        }
        (None, None) => status.to_string(),
    }
}

/// `VmHWM` (peak resident set) of a live process, in KiB.
pub fn vm_hwm_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// The environment Lambda gives a `provided.al2023` function, before the function's own.
pub fn lambda_env(spec: &FunctionSpec, runtime_api: &str) -> Vec<(String, String)> {
    let region = spec.region();
    let name = &spec.function_name;
    let mut env: Vec<(String, String)> = [
        ("AWS_LAMBDA_RUNTIME_API", runtime_api.to_string()),
        ("AWS_LAMBDA_FUNCTION_NAME", name.clone()),
        (
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
            spec.memory_mb.to_string(),
        ),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".to_string()),
        ("AWS_LAMBDA_LOG_GROUP_NAME", format!("/aws/lambda/{name}")),
        (
            "AWS_LAMBDA_LOG_STREAM_NAME",
            "local/[$LATEST]0000000000000000".to_string(),
        ),
        ("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand".to_string()),
        ("AWS_REGION", region.clone()),
        ("AWS_DEFAULT_REGION", region),
        ("AWS_ACCESS_KEY_ID", "AKIDLOCALEMULATOR".to_string()),
        ("AWS_SECRET_ACCESS_KEY", "local-emulator-secret".to_string()),
        ("AWS_SESSION_TOKEN", "local-emulator-session".to_string()),
        ("_HANDLER", "bootstrap".to_string()),
        ("LAMBDA_TASK_ROOT", "/var/task".to_string()),
        ("LAMBDA_RUNTIME_DIR", "/var/runtime".to_string()),
        ("TZ", ":UTC".to_string()),
        ("LANG", "en_US.UTF-8".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    env.extend(spec.logging.iter().flat_map(|l| l.variables()));
    // The host's PATH, so a wrapper such as qemu-aarch64-static is found.
    if let Ok(path) = std::env::var("PATH") {
        env.push(("PATH".to_string(), path));
    }
    env
}

async fn forward_lines(stream: impl AsyncRead + Unpin, tx: mpsc::UnboundedSender<String>) {
    let mut reader = BufReader::new(stream);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                let mut line = String::from_utf8_lossy(&buf).into_owned();
                if !line.ends_with('\n') {
                    line.push('\n');
                }
                if tx.send(line).is_err() {
                    break;
                }
            }
        }
    }
}
