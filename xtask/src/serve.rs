//! `cargo xtask serve`: the Lambda Invoke API on 127.0.0.1 in front of the real release bootstrap,
//! run through the Runtime API emulator against local Postgres and the Secrets Manager emulator.
//! Point `AWS_ENDPOINT_URL_LAMBDA` at it and `cargo xtask invoke` (or any SDK) talks to it.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use anyhow::Context;
pub use xshell::Shell;

use crate::build::{self, Arch};
use crate::invoke_api::{self, InvokeApi, Outcome};
use crate::local::logging::LogArgs;
use crate::local::postgres::{PgChoice, PgServer};
use crate::local::runtime_api::{FunctionSpec, LocalFunction};
use crate::local::secrets_manager::SecretsManager;

/// The function name `serve` answers to (the deployed one).
pub const FUNCTION_NAME: &str = "ca-a2a-db-init";
/// The secret id the local function reads, as in AWS.
pub const SECRET_ID: &str = "ca-a2a/db-password";

/// Which bootstrap `serve` runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ServeArch {
    /// `cargo build --release -p init-fn` for this machine
    Host,
    /// The arm64 Lambda bootstrap under qemu-aarch64-static
    Arm64,
}

/// Answer the Lambda Invoke API on 127.0.0.1 with the real bootstrap, local Postgres and Secrets Manager
#[derive(clap::Args)]
pub struct Serve {
    /// Port on 127.0.0.1
    #[arg(long, default_value_t = 9001)]
    pub port: u16,
    /// Postgres: auto | docker | local | postgres://URL
    #[arg(long, default_value = "auto")]
    pub postgres: String,
    /// Bootstrap architecture
    #[arg(long, value_enum, default_value = "host")]
    pub arch: ServeArch,
    #[command(flatten)]
    pub log: LogArgs,
}

impl Serve {
    pub fn run(self, sh: &Shell) -> anyhow::Result<()> {
        let choice: PgChoice = self.postgres.parse()?;
        crate::local::postgres::hand_over_if_docker(&choice)?;
        let (bootstrap, wrapper) = match self.arch {
            ServeArch::Host => (host_bootstrap(sh)?, None),
            ServeArch::Arm64 => (build::bootstrap(sh, Arch::Arm64)?, Some(qemu_wrapper())),
        };
        crate::runtime()?.block_on(async {
            let mut stack = LocalStack::start(&choice, bootstrap, wrapper).await?;
            stack.spec.logging = Some(self.log.controls());
            let api = stack
                .serve(([127, 0, 0, 1], self.port).into())
                .await?;
            println!(
                "Lambda Invoke API for {FUNCTION_NAME} on {} (Postgres: {}, database documents_db)",
                api.endpoint(),
                stack.pg_kind
            );
            println!(
                "  AWS_ENDPOINT_URL_LAMBDA={} AWS_ACCESS_KEY_ID=x AWS_SECRET_ACCESS_KEY=x cargo xtask invoke --action status",
                api.endpoint()
            );
            println!("Ctrl-C stops it");
            tokio::signal::ctrl_c().await?;
            drop(api);
            stack.stop().await
        })
    }
}

/// `qemu-aarch64-static` with the arm64 glibc from Debian's `libc6-arm64-cross`.
pub fn qemu_wrapper() -> Vec<String> {
    vec![
        "qemu-aarch64-static".to_string(),
        "-L".to_string(),
        "/usr/aarch64-linux-gnu".to_string(),
    ]
}

/// `cargo build --release -p init-fn` for this machine; returns `target/release/init-fn`.
pub fn host_bootstrap(_sh: &Shell) -> anyhow::Result<PathBuf> {
    crate::test_local::build_release_bootstrap()
}

/// Postgres, the Secrets Manager emulator seeded with the password, and the function's sandbox.
pub struct LocalStack {
    pub pg: PgServer,
    pub pg_kind: &'static str,
    pub secrets: SecretsManager,
    pub spec: FunctionSpec,
}

impl LocalStack {
    /// Starts Postgres (with a fresh `documents_db`) and Secrets Manager, and prepares the
    /// function's environment as deploy would set it (TLS verify-full against the local CA).
    pub async fn start(
        choice: &PgChoice,
        bootstrap: PathBuf,
        wrapper: Option<Vec<String>>,
    ) -> anyhow::Result<LocalStack> {
        let pg = PgServer::start(choice).await?;
        if !matches!(choice, PgChoice::Url(_)) {
            pg.create_database("documents_db").await?;
        }
        let secrets = SecretsManager::start().await?;
        secrets.put(SECRET_ID, pg.password());
        let mut env = vec![
            ("DB_HOST".to_string(), pg.host().to_string()),
            ("DB_PORT".to_string(), pg.port().to_string()),
            ("DB_NAME".to_string(), "documents_db".to_string()),
            ("DB_USER".to_string(), pg.user().to_string()),
            ("DB_SECRET_ID".to_string(), SECRET_ID.to_string()),
            (
                "AWS_ENDPOINT_URL_SECRETS_MANAGER".to_string(),
                secrets.endpoint(),
            ),
        ];
        match pg.ca_bundle_path() {
            Some(ca) => {
                env.push(("DB_SSLMODE".to_string(), "verify-full".to_string()));
                env.push(("DB_CA_BUNDLE".to_string(), ca.display().to_string()));
            }
            None => env.push(("DB_SSLMODE".to_string(), "require".to_string())),
        }
        let mut spec = FunctionSpec::new(bootstrap, FUNCTION_NAME);
        spec.wrapper = wrapper;
        spec.env = env;
        spec.timeout = Duration::from_secs(60);
        Ok(LocalStack {
            pg_kind: pg.kind(),
            pg,
            secrets,
            spec,
        })
    }

    /// The Invoke API on `bind`, running this stack's function one event at a time.
    pub async fn serve(&self, bind: SocketAddr) -> anyhow::Result<InvokeApi> {
        let function = LocalFunction::start(self.spec.clone()).await?;
        InvokeApi::start(
            bind,
            FUNCTION_NAME,
            SandboxBackend {
                function: tokio::sync::Mutex::new(function),
                timeout: self.spec.timeout,
            },
        )
        .await
    }

    pub async fn stop(self) -> anyhow::Result<()> {
        drop(self.secrets);
        self.pg.stop().await
    }
}

/// The Invoke API's backend: one warm bootstrap process behind the Runtime API emulator.
struct SandboxBackend {
    function: tokio::sync::Mutex<LocalFunction>,
    timeout: Duration,
}

impl invoke_api::Backend for SandboxBackend {
    async fn invoke(&self, event: Vec<u8>) -> anyhow::Result<Outcome> {
        let event: serde_json::Value =
            serde_json::from_slice(&event).context("the event is not JSON")?;
        let inv = self.function.lock().await.invoke(event).await?;
        let (payload, error) = inv.payload(self.timeout);
        Ok(Outcome {
            payload: serde_json::to_vec(&payload)?,
            error: error.is_some(),
            log: inv.log,
        })
    }
}
