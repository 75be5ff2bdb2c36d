//! `DB_AUTH=iam` against a PostgreSQL that checks the token (PAM + a SigV4 verifier, see
//! `tests::rds_iam`): the function's own token logs in; a token for another user, host or port,
//! signed with the wrong key or older than 15 minutes is refused with a named `Auth` error; the real
//! bootstrap applies, reruns, plans and verifies the `sql/` history as `init_fn_migrator`, adopts
//! a database the master user initialised, and reads no secret, under both local runtimes.

use std::time::{Duration, Instant, SystemTime};

use init_fn::config::SslMode;
use init_fn::session::{Target, connect, iam, tls::MakeTlsConnector};
use serde_json::{Value, json};
use tests::rds_iam::{self, MIGRATOR, REGION, TokenCheckingServer};
use xtask::local::function::{Function, Runtime};
use xtask::local::runtime_api::{FunctionSpec, Outcome};
use xtask::local::secrets_manager::SecretsManager;

fn credentials(secret: &str) -> iam::Credentials {
    iam::Credentials::from_lookup(|name| match name {
        "AWS_ACCESS_KEY_ID" => Some(rds_iam::ACCESS_KEY_ID.to_string()),
        "AWS_SECRET_ACCESS_KEY" => Some(secret.to_string()),
        "AWS_SESSION_TOKEN" => Some(rds_iam::SESSION_TOKEN.to_string()),
        _ => None,
    })
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_takes_the_functions_token_and_refuses_the_others() -> anyhow::Result<()> {
    let server = TokenCheckingServer::start().await?;
    server.setup_migrator("documents_db").await?;
    let ca = std::fs::read(server.pg.ca_bundle_path().unwrap())?;
    let tls = MakeTlsConnector::new(SslMode::VerifyFull, Some(&ca))?;
    let (host, port) = (server.pg.host().to_string(), server.pg.port());
    let now = SystemTime::now();
    let good = credentials(rds_iam::SECRET_ACCESS_KEY);
    let login = |password: init_fn::session::secret::Password| {
        let target = Target {
            host: host.clone(),
            port,
            dbname: "documents_db".to_string(),
            user: MIGRATOR.to_string(),
            password,
            sslmode: SslMode::VerifyFull,
            connect_timeout: Duration::from_secs(10),
        };
        let tls = tls.clone();
        async move {
            connect(&target, tls)
                .await
                .map(|_| ())
                .map_err(|e| iam::refused(e, MIGRATOR))
        }
    };

    let own = iam::token(&host, port, MIGRATOR, REGION, &good, now)?;
    login(own).await?;
    assert!(
        server.verdicts().last().unwrap().starts_with("accepted"),
        "{:?}",
        server.verdicts()
    );

    let cases = [
        (
            "token for another user",
            iam::token(&host, port, "postgres", REGION, &good, now)?,
        ),
        (
            "token for another host or port",
            iam::token("db.elsewhere", port, MIGRATOR, REGION, &good, now)?,
        ),
        (
            "token for another host or port",
            iam::token(&host, port + 1, MIGRATOR, REGION, &good, now)?,
        ),
        (
            "bad signature",
            iam::token(
                &host,
                port,
                MIGRATOR,
                REGION,
                &credentials("not-the-key"),
                now,
            )?,
        ),
        (
            "signed for another region",
            iam::token(&host, port, MIGRATOR, "us-east-1", &good, now)?,
        ),
        (
            "expired",
            iam::token(
                &host,
                port,
                MIGRATOR,
                REGION,
                &good,
                now - Duration::from_secs(16 * 60),
            )?,
        ),
    ];
    for (reason, token) in cases {
        let text = token.expose().to_string();
        let err = login(token).await.unwrap_err();
        let message = err.to_string();
        assert_eq!(err.error_type(), "Auth", "{reason}: {message}");
        assert!(!message.contains('\n'), "{message}");
        for fix in [
            format!("GRANT rds_iam TO {MIGRATOR}"),
            "--enable-iam-database-authentication".to_string(),
            "rds-db:connect".to_string(),
        ] {
            assert!(message.contains(&fix), "{reason}: {message}");
        }
        assert!(!message.contains(&text) && !message.contains("X-Amz-Signature"));
        let verdict = server.verdicts().last().cloned().unwrap_or_default();
        assert_eq!(verdict, format!("refused: {reason}"));
    }
    server.stop().await
}

/// The environment deploy gives an `iam` function, pointed at `server`.
fn iam_spec(
    bootstrap: &std::path::Path,
    server: &TokenCheckingServer,
    secrets: &SecretsManager,
    db: &str,
) -> FunctionSpec {
    let mut spec = FunctionSpec::new(bootstrap, "ca-a2a-db-init");
    spec.env = vec![
        ("DB_AUTH".into(), "iam".into()),
        ("DB_HOST".into(), server.pg.host().into()),
        ("DB_PORT".into(), server.pg.port().to_string()),
        ("DB_NAME".into(), db.into()),
        ("DB_USER".into(), MIGRATOR.into()),
        ("DB_SSLMODE".into(), "verify-full".into()),
        (
            "DB_CA_BUNDLE".into(),
            server.pg.ca_bundle_path().unwrap().display().to_string(),
        ),
        // Reachable, counted, and never to be called in iam mode.
        (
            "AWS_ENDPOINT_URL_SECRETS_MANAGER".into(),
            secrets.endpoint(),
        ),
        ("AWS_REGION".into(), REGION.into()),
    ];
    spec.timeout = Duration::from_secs(60);
    spec
}

/// The same function in today's `secret` mode, as the master user.
fn secret_spec(
    bootstrap: &std::path::Path,
    server: &TokenCheckingServer,
    secrets: &SecretsManager,
    db: &str,
) -> FunctionSpec {
    secrets.put("ca-a2a/db-password", server.pg.password());
    let mut spec = iam_spec(bootstrap, server, secrets, db);
    spec.env.retain(|(k, _)| k != "DB_AUTH" && k != "DB_USER");
    spec.env.push(("DB_USER".into(), server.pg.user().into()));
    spec.env
        .push(("DB_SECRET_ID".into(), "ca-a2a/db-password".into()));
    spec
}

async fn run(function: &mut Function, action: &str) -> anyhow::Result<(Value, String)> {
    let inv = function.invoke(json!({ "action": action })).await?;
    match &inv.outcome {
        Outcome::Response(report) => Ok((report.clone(), inv.log.clone())),
        other => anyhow::bail!("{action}: {other:?}\n{}", inv.log),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bootstrap_migrates_with_iam_under_both_runtimes() -> anyhow::Result<()> {
    let bootstrap = xtask::test_local::build_release_bootstrap()?;
    let server = TokenCheckingServer::start().await?;
    let secrets = SecretsManager::start().await?;
    for runtime in [Runtime::Emulator, Runtime::Rie] {
        // A fresh database: the setup, then the whole history as init_fn_migrator.
        let fresh = format!("fresh_{}", runtime.name());
        server.pg.create_database(&fresh).await?;
        server.setup_migrator(&fresh).await?;
        let mut function =
            Function::start(runtime, iam_spec(&bootstrap, &server, &secrets, &fresh)).await?;
        let mut logs = String::new();
        for (action, states) in [
            ("apply", "applied"),
            ("apply", "already_applied"),
            ("plan", "already_applied"),
            ("verify", "already_applied"),
            ("status", "already_applied"),
        ] {
            let (report, log) = run(&mut function, action).await?;
            logs.push_str(&log);
            assert_eq!(
                report["status"],
                "ok",
                "{}: {action}: {report:#}",
                runtime.name()
            );
            let got = tests::harness::states(&report);
            assert!(
                !got.is_empty() && got.iter().all(|s| s == states),
                "{action}: {got:?}"
            );
        }
        function.shutdown().await;

        // A database the original initialised (the master user ran the SQL, no ledger), adopted.
        let adopted = format!("adopted_{}", runtime.name());
        server.pg.create_database(&adopted).await?;
        let original =
            std::fs::read_to_string(tests::harness::root().join("sql/0001_initial_schema.sql"))?;
        server
            .pg
            .client(&adopted)
            .await?
            .batch_execute(&original)
            .await?;
        let reads = secrets.request_count();
        server.setup_migrator(&adopted).await?;
        // Twice: the setup is idempotent.
        server.setup_migrator(&adopted).await?;
        let mut function =
            Function::start(runtime, iam_spec(&bootstrap, &server, &secrets, &adopted)).await?;
        for (action, state) in [
            ("apply", "adopted"),
            ("apply", "already_applied"),
            ("verify", "already_applied"),
        ] {
            let (report, log) = run(&mut function, action).await?;
            logs.push_str(&log);
            assert_eq!(report["status"], "ok", "{action}: {report:#}");
            assert_eq!(tests::harness::states(&report), [state], "{action}");
        }
        function.shutdown().await;
        assert_eq!(
            secrets.request_count(),
            reads,
            "DB_AUTH=iam read Secrets Manager"
        );
        for needle in ["X-Amz-Signature", "X-Amz-Credential", "Action=connect"] {
            assert!(!logs.contains(needle), "the token is in the log:\n{logs}");
        }
        let owner: String = server
            .pg
            .client(&adopted)
            .await?
            .query_one(
                "SELECT pg_get_userbyid(relowner)::text FROM pg_class WHERE relname = '_init_fn_migrations'",
                &[],
            )
            .await?
            .get(0);
        assert_eq!(owner, "init_fn_owner");
    }
    let accepted = server
        .verdicts()
        .iter()
        .filter(|v| v.starts_with("accepted"))
        .count();
    assert!(accepted >= 16, "{:?}", server.verdicts());
    server.stop().await
}

/// Cold starts in both modes, one process per invocation: the figures for the issue.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cold_start_iam_vs_secret() -> anyhow::Result<()> {
    let bootstrap = xtask::test_local::build_release_bootstrap()?;
    let server = TokenCheckingServer::start().await?;
    server.setup_migrator("documents_db").await?;
    let secrets = SecretsManager::start().await?;
    let mut figures = Vec::new();
    for (mode, spec) in [
        (
            "secret",
            secret_spec(&bootstrap, &server, &secrets, "documents_db"),
        ),
        (
            "iam",
            iam_spec(&bootstrap, &server, &secrets, "documents_db"),
        ),
    ] {
        let mut samples = Vec::new();
        for _ in 0..5 {
            let mut function = Function::start(Runtime::Emulator, spec.clone()).await?;
            let started = Instant::now();
            let (report, _) = run(&mut function, "status").await?;
            samples.push(started.elapsed().as_millis());
            assert_eq!(report["status"], "ok", "{mode}: {report:#}");
            function.shutdown().await;
        }
        samples.sort();
        figures.push(format!(
            "{mode}: cold status median {} ms {samples:?}",
            samples[2]
        ));
    }
    println!("{}", figures.join("\n"));
    server.stop().await
}
