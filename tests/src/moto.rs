//! A moto server (PyPI `moto[server]`) on a free 127.0.0.1 port for the deploy/clean tests, killed on
//! drop. A missing moto is an error with the install command, never a skipped test.

use std::{
    net::{SocketAddr, TcpListener, TcpStream},
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};

pub struct Moto {
    child: Child,
    pub endpoint: String,
    /// Where moto's recorder writes the requests it received, once a test starts it
    /// (`/moto-api/recorder/start-recording`).
    pub recording: PathBuf,
}

/// `<root>/.venv/bin/moto_server`, else `moto_server` on PATH.
fn moto_server() -> anyhow::Result<PathBuf> {
    let venv = xtask::project_root().join(".venv/bin/moto_server");
    if venv.exists() {
        return Ok(venv);
    }
    let on_path = std::env::var_os("PATH")
        .map(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join("moto_server"))
                .find(|p| p.exists())
        })
        .unwrap_or_default();
    on_path.context(
        "moto_server not found (needed for the deploy/clean tests against a local AWS): \
         python3 -m venv .venv && .venv/bin/pip install 'moto[server]'",
    )
}

impl Moto {
    /// Starts `moto_server -H 127.0.0.1 -p <free port>` and waits until it answers.
    pub fn start() -> anyhow::Result<Moto> {
        let bin = moto_server()?;
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let recording = std::env::temp_dir().join(format!("init-fn-moto-{port}.recording"));
        let child = Command::new(&bin)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            // AWS-managed policies (AWSLambdaVPCAccessExecutionRole, ...) exist only when asked for.
            .env("MOTO_IAM_LOAD_MANAGED_POLICIES", "true")
            .env("MOTO_RECORDER_FILEPATH", &recording)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("start {}", bin.display()))?;
        let mut moto = Moto {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
            recording,
        };
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let started = Instant::now();
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            if let Some(status) = moto.child.try_wait()? {
                bail!("moto_server exited before answering: {status}");
            }
            if started.elapsed() > Duration::from_secs(60) {
                bail!(
                    "moto_server did not answer on {} within 60 s",
                    moto.endpoint
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(moto)
    }

    /// An SDK config pointing every service at this server, with dummy credentials.
    pub async fn sdk_config(&self) -> xtask_aws::aws::SdkConfig {
        xtask_aws::aws::local_sdk_config(&self.endpoint, "eu-west-3").await
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.recording);
    }
}
