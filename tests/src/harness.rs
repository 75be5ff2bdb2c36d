//! One real Postgres server (docker or local cluster, TLS on), the Secrets Manager emulator seeded with
//! its password, and the `init-fn` handler called in-process with an environment built per test.

use std::{collections::HashMap, path::PathBuf, str::FromStr};

use anyhow::Context;
use init_fn::{Config, InitError, State, engine::run::Migration};
use xtask::local::{
    postgres::{PgChoice, PgServer, docker_answers},
    secrets_manager::SecretsManager,
};

pub const SECRET_ID: &str = "ca-a2a/db-password";
pub const DB: &str = "documents_db";

/// The original handler's DDL, statement for statement.
pub const SEED_DDL: &str = include_str!("../fixtures/seed_ddl.sql");

pub struct Harness {
    pub pg: PgServer,
    pub secrets: SecretsManager,
    client: aws_sdk_secretsmanager::Client,
}

/// `INIT_FN_TEST_POSTGRES` (auto | docker | local | URL), default auto.
pub fn choice_from_env() -> anyhow::Result<PgChoice> {
    PgChoice::from_str(
        &std::env::var("INIT_FN_TEST_POSTGRES").unwrap_or_else(|_| "auto".to_string()),
    )
}

/// Docker when an engine answers; locally without one, the local cluster (said out loud). Under
/// `CI=true` a missing engine is a failure: CI must exercise both providers.
pub async fn docker_or_fallback() -> anyhow::Result<PgChoice> {
    if xtask::is_ci() || docker_answers().await {
        return Ok(PgChoice::Docker {
            image: xtask::local::postgres::DEFAULT_IMAGE.to_string(),
        });
    }
    eprintln!("note: no Docker engine answers; this docker test runs on the local cluster instead");
    Ok(PgChoice::Local)
}

impl Harness {
    /// A server with an empty `documents_db` and the secret holding its password.
    pub async fn start(choice: &PgChoice) -> anyhow::Result<Harness> {
        let pg = PgServer::start(choice).await.context("start postgres")?;
        pg.create_database(DB).await?;
        let secrets = SecretsManager::start().await?;
        secrets.put(SECRET_ID, pg.password());
        let sdk = aws_sdk_secretsmanager::Config::builder()
            .behavior_version(aws_sdk_secretsmanager::config::BehaviorVersion::latest())
            .region(aws_sdk_secretsmanager::config::Region::new("eu-west-3"))
            .endpoint_url(secrets.endpoint())
            .credentials_provider(aws_sdk_secretsmanager::config::Credentials::new(
                "AKIDLOCAL",
                "local",
                None,
                None,
                "tests",
            ))
            .http_client(init_fn::session::secret::https_client())
            .timeout_config(init_fn::session::secret::timeouts())
            .build();
        Ok(Harness {
            pg,
            secrets,
            client: aws_sdk_secretsmanager::Client::from_conf(sdk),
        })
    }

    /// Same, on `INIT_FN_TEST_POSTGRES` (auto by default).
    pub async fn from_env() -> anyhow::Result<Harness> {
        Harness::start(&choice_from_env()?).await
    }

    /// The function's environment for this server: verify-full against the run's CA.
    pub fn env(&self) -> HashMap<String, String> {
        let mut env = HashMap::new();
        env.insert("DB_HOST".into(), self.pg.host().to_string());
        env.insert("DB_PORT".into(), self.pg.port().to_string());
        env.insert("DB_NAME".into(), DB.into());
        env.insert("DB_USER".into(), self.pg.user().to_string());
        env.insert("DB_SECRET_ID".into(), SECRET_ID.into());
        env.insert("DB_SSLMODE".into(), "verify-full".into());
        if let Some(ca) = self.pg.ca_bundle_path() {
            env.insert("DB_CA_BUNDLE".into(), ca.display().to_string());
        }
        env
    }

    /// The handler's state for `env` with `overrides` applied (an empty value removes a variable).
    pub fn state(&self, overrides: &[(&str, &str)], migrations: Vec<Migration>) -> State {
        let mut env = self.env();
        for (k, v) in overrides {
            if v.is_empty() {
                env.remove(*k);
            } else {
                env.insert(k.to_string(), v.to_string());
            }
        }
        State::new(
            Config::from_lookup(|k| env.get(k).cloned()),
            {
                let client = self.client.clone();
                move || client
            },
            migrations,
        )
    }

    /// One invocation with the embedded migrations; the report as JSON.
    pub async fn invoke(
        &self,
        overrides: &[(&str, &str)],
        event: serde_json::Value,
    ) -> Result<serde_json::Value, InitError> {
        let state = self.state(overrides, init_fn::engine::run::embedded());
        invoke(&state, event).await
    }

    pub async fn client(&self, db: &str) -> anyhow::Result<tokio_postgres::Client> {
        self.pg.client(db).await
    }

    /// Ledger rows as (version, name).
    pub async fn ledger(&self, db: &str) -> anyhow::Result<Vec<(i32, String)>> {
        let client = self.client(db).await?;
        let exists: bool = client
            .query_one(
                "SELECT to_regclass('public._init_fn_migrations') IS NOT NULL",
                &[],
            )
            .await?
            .get(0);
        if !exists {
            return Ok(Vec::new());
        }
        Ok(client
            .query(
                "SELECT version, name FROM public._init_fn_migrations ORDER BY version",
                &[],
            )
            .await?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect())
    }

    /// The server's current value of setting `name` (e.g. `hba_file`, `ssl_cert_file`).
    pub async fn setting(&self, name: &str) -> anyhow::Result<String> {
        let client = self.client("postgres").await?;
        Ok(client
            .query_one("SELECT current_setting($1)", &[&name])
            .await?
            .get(0))
    }

    /// `pg_reload_conf()`, then waits until a new session sees the reload (the postmaster reloads
    /// pg_hba.conf and the TLS certificate before it forks that session).
    pub async fn reload(&self) -> anyhow::Result<()> {
        let client = self.client("postgres").await?;
        let before: String = client
            .query_one("SELECT pg_conf_load_time()::text", &[])
            .await?
            .get(0);
        client.batch_execute("SELECT pg_reload_conf()").await?;
        for _ in 0..100 {
            let reloaded: bool = self
                .client("postgres")
                .await?
                .query_one(
                    &format!("SELECT pg_conf_load_time() > '{before}'::timestamptz"),
                    &[],
                )
                .await?
                .get(0);
            if reloaded {
                return Ok(());
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        anyhow::bail!("the server did not reload its configuration")
    }

    /// `public` tables and indexes by name (ledger excluded).
    pub async fn relations(&self, db: &str) -> anyhow::Result<Vec<String>> {
        let client = self.client(db).await?;
        Ok(client
            .query(
                "SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE n.nspname = 'public' AND c.relkind IN ('r', 'i', 'S') \
                 AND c.relname NOT LIKE '\\_init\\_fn\\_%' ORDER BY 1",
                &[],
            )
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect())
    }
}

/// Overwrites the server-side file `path` with `text` as the server (a superuser's `COPY ... TO`;
/// the cluster's files belong to its OS user, mode 0600), line by line.
pub async fn write_server_file(
    client: &tokio_postgres::Client,
    path: &str,
    text: &str,
) -> anyhow::Result<()> {
    // COPY's text format would escape these; PEM and pg_hba.conf lines here have none.
    anyhow::ensure!(
        !text.contains(['\\', '\t', '\'']),
        "{path}: unexpected characters"
    );
    let lines: Vec<String> = text.lines().map(|l| format!("'{l}'")).collect();
    client
        .batch_execute(&format!(
            "COPY (SELECT line FROM unnest(ARRAY[{}]::text[]) WITH ORDINALITY AS t(line, n) ORDER BY n) TO '{path}'",
            lines.join(", ")
        ))
        .await?;
    Ok(())
}

/// One invocation of `state`; the report as JSON.
pub async fn invoke(
    state: &State,
    event: serde_json::Value,
) -> Result<serde_json::Value, InitError> {
    let report = init_fn::handle(state, event, "test-request", None).await?;
    Ok(serde_json::to_value(report).expect("report serializes"))
}

/// `sql/` as shipped, plus extra test migrations.
pub fn with_extra(extra: &[(u32, &str, &str)]) -> Vec<Migration> {
    let mut all = init_fn::engine::run::embedded();
    all.extend(extra.iter().map(|(v, n, s)| Migration::new(*v, n, s)));
    all
}

/// The repository root.
pub fn root() -> PathBuf {
    xtask::project_root()
}

/// Migration states in report order.
pub fn states(report: &serde_json::Value) -> Vec<String> {
    report["migrations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["state"].as_str().unwrap().to_string())
        .collect()
}

/// Object outcomes in report order.
pub fn outcomes(report: &serde_json::Value) -> Vec<String> {
    report["objects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["outcome"].as_str().unwrap().to_string())
        .collect()
}
