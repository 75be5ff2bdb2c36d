//! `DB_AUTH=iam` against a PostgreSQL that checks the token (PAM + a SigV4 verifier, see
//! `tests::rds_iam`): the function's own token logs in; a token for another user, host or port,
//! signed with the wrong key or older than 15 minutes is refused with a named `Auth` error; the real
//! bootstrap applies, reruns, plans and verifies the `sql/` history as `init_fn_migrator`, adopts
//! a database the master user initialised, and reads no secret, under both local runtimes, host
//! and arm64 (the Lambda arm64 bootstrap under qemu-user).

use std::io::Write;
use std::time::{Duration, SystemTime};

use init_fn::config::SslMode;
use init_fn::session::{Target, connect, iam, tls::MakeTlsConnector};
use serde_json::{Value, json};
use tests::rds_iam::{self, MIGRATOR, REGION, TokenCheckingServer};
use xtask::build::Arch;
use xtask::local::function::{Function, Runtime};
use xtask::local::runtime_api::{FunctionSpec, Outcome};
use xtask::local::secrets_manager::SecretsManager;
use xtask::test_local::Target as Bootstrap;

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

/// The environment deploy gives an `iam` function, pointed at `db` on `server`.
fn iam_spec(
    bootstrap: &std::path::Path,
    server: &TokenCheckingServer,
    secrets: &SecretsManager,
    db: &str,
) -> FunctionSpec {
    let mut spec = FunctionSpec::new(bootstrap, "ca-a2a-db-init");
    spec.env = server.iam_env(secrets, db);
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
    let mut spec = iam_spec(bootstrap, server, secrets, db);
    spec.env = server.secret_env(secrets, db);
    spec
}

async fn run(function: &mut Function, action: &str) -> anyhow::Result<(Value, String)> {
    let inv = function.invoke(json!({ "action": action })).await?;
    match &inv.outcome {
        Outcome::Response(report) => Ok((report.clone(), inv.log.clone())),
        other => anyhow::bail!("{action}: {other:?}\n{}", inv.log),
    }
}

/// Runs each `(action, state)` in turn on the warm `function`: every report `ok`, every migration in
/// `state`. Returns the invocations' logs, concatenated.
async fn run_expecting(
    function: &mut Function,
    runtime: Runtime,
    steps: &[(&str, &str)],
) -> anyhow::Result<String> {
    let mut logs = String::new();
    for &(action, state) in steps {
        let (report, log) = run(function, action).await?;
        logs.push_str(&log);
        assert_eq!(
            report["status"],
            "ok",
            "{}: {action}: {report:#}",
            runtime.name()
        );
        let got = tests::harness::states(&report);
        assert!(
            !got.is_empty() && got.iter().all(|s| s == state),
            "{}: {action}: {got:?}",
            runtime.name()
        );
    }
    Ok(logs)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bootstrap_migrates_with_iam_under_both_runtimes() -> anyhow::Result<()> {
    let bootstrap = xtask::test_local::build_local_bootstrap()?;
    let server = TokenCheckingServer::start().await?;
    let secrets = SecretsManager::start().await?;
    for runtime in [Runtime::Emulator, Runtime::Rie] {
        // A fresh database: the setup, then the whole history as init_fn_migrator.
        let fresh = format!("fresh_{}", runtime.name());
        server.pg.create_database(&fresh).await?;
        server.setup_migrator(&fresh).await?;
        let mut function =
            Function::start(runtime, iam_spec(&bootstrap, &server, &secrets, &fresh)).await?;
        let mut logs = run_expecting(
            &mut function,
            runtime,
            &[
                ("apply", "applied"),
                ("apply", "already_applied"),
                ("plan", "already_applied"),
                ("verify", "already_applied"),
                ("status", "already_applied"),
            ],
        )
        .await?;
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
        let adopting = run_expecting(
            &mut function,
            runtime,
            &[
                ("apply", "adopted"),
                ("apply", "already_applied"),
                ("verify", "already_applied"),
            ],
        )
        .await?;
        logs.push_str(&adopting);
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

/// One cold start in each mode on the same server: `secret` reads the secret exactly once and its
/// master-user login never reaches the verifier; `iam` reads nothing and its login is the
/// verifier's. (What each costs: `cargo xtask bench --auth iam`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cold_start_reads_the_secret_only_in_secret_mode() -> anyhow::Result<()> {
    let bootstrap = xtask::test_local::build_local_bootstrap()?;
    let server = TokenCheckingServer::start().await?;
    server.setup_migrator("documents_db").await?;
    let secrets = SecretsManager::start().await?;
    for (mode, spec, reads, logins) in [
        (
            "secret",
            secret_spec(&bootstrap, &server, &secrets, "documents_db"),
            1,
            0,
        ),
        (
            "iam",
            iam_spec(&bootstrap, &server, &secrets, "documents_db"),
            0,
            1,
        ),
    ] {
        let (requests, verdicts) = (secrets.request_count(), server.verdicts().len());
        let mut function = Function::start(Runtime::Emulator, spec).await?;
        let (report, _) = run(&mut function, "status").await?;
        function.shutdown().await;
        assert_eq!(report["status"], "ok", "{mode}: {report:#}");
        assert_eq!(
            secrets.request_count() - requests,
            reads,
            "{mode}: Secrets Manager requests"
        );
        let new = server.verdicts()[verdicts..].to_vec();
        assert_eq!(new.len(), logins, "{mode}: {new:?}");
        assert!(
            new.iter().all(|v| v.starts_with("accepted")),
            "{mode}: {new:?}"
        );
    }
    server.stop().await
}

/// The Lambda arm64 bootstrap, built exactly as `cargo xtask test-local --arch arm64` builds it
/// (`target/lambda/init-fn/arm64/`: CI's later arm64 step finds it built), to run under qemu-user.
/// A missing tool (cargo-zigbuild, ziglang, the rust target, qemu) fails the test; it never skips.
fn arm64_target() -> anyhow::Result<Bootstrap> {
    // Straight to stderr: libtest captures eprintln!, and a first build takes minutes.
    let _ = writeln!(
        std::io::stderr(),
        "iam_auth: building the Lambda arm64 bootstrap (release, cargo-zigbuild; minutes on a first build)"
    );
    let sh = xtask::serve::Shell::new()?;
    let bootstrap = xtask::build::bootstrap(&sh, Arch::Arm64)?;
    let qemu = std::process::Command::new("qemu-aarch64-static")
        .arg("--version")
        .output();
    anyhow::ensure!(
        qemu.is_ok_and(|out| out.status.success()),
        "the arm64 bootstrap needs qemu-aarch64-static (Debian: qemu-user-static, libc6-arm64-cross)"
    );
    Ok(Bootstrap::arm64(bootstrap))
}

/// `env` for the arm64 bootstrap under qemu (its wrapper and `QEMU_LD_PREFIX` first).
fn arm64_spec(target: &Bootstrap, env: Vec<(String, String)>) -> FunctionSpec {
    let mut spec = FunctionSpec::new(&target.bootstrap, "ca-a2a-db-init");
    spec.wrapper = target.wrapper.clone();
    spec.env = target.env.iter().cloned().chain(env).collect();
    spec.timeout = Duration::from_secs(60);
    spec
}

/// One cold invocation that must fail: its `errorType`, its message and its log.
async fn refused(runtime: Runtime, spec: FunctionSpec) -> anyhow::Result<(String, String, String)> {
    let mut function = Function::start(runtime, spec).await?;
    let inv = function.invoke(json!({ "action": "apply" })).await?;
    function.shutdown().await;
    match inv.outcome {
        Outcome::FunctionError {
            error_type,
            error_message,
        } => Ok((error_type, error_message, inv.log)),
        other => anyhow::bail!("expected a refusal, got {other}\n{}", inv.log),
    }
}

/// "Both runtimes, host and arm64": the arm64 bootstrap under qemu-user applies the `sql/` history
/// as `init_fn_migrator` with its own token and reads no secret; a token signed with the wrong key
/// (the verifier's verdict) and a user without `rds_iam` are each the named `Auth` error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_arm64_bootstrap_migrates_with_iam_under_qemu() -> anyhow::Result<()> {
    let target = arm64_target()?;
    let server = TokenCheckingServer::start().await?;
    let secrets = SecretsManager::start().await?;
    for runtime in [Runtime::Emulator, Runtime::Rie] {
        let db = format!("arm64_{}", runtime.name());
        server.pg.create_database(&db).await?;
        server.setup_migrator(&db).await?;
        let reads = secrets.request_count();
        let mut function =
            Function::start(runtime, arm64_spec(&target, server.iam_env(&secrets, &db))).await?;
        let mut logs = run_expecting(
            &mut function,
            runtime,
            &[("apply", "applied"), ("apply", "already_applied")],
        )
        .await?;
        function.shutdown().await;
        assert!(
            server.verdicts().last().unwrap().starts_with("accepted"),
            "{:?}",
            server.verdicts()
        );

        // The function's role key is not the one the server knows.
        let mut env = server.iam_env(&secrets, &db);
        env.push(("AWS_SECRET_ACCESS_KEY".into(), "not-the-key".into()));
        let (error_type, message, log) = refused(runtime, arm64_spec(&target, env)).await?;
        logs.push_str(&log);
        logs.push_str(&message);
        assert_eq!(error_type, "Auth", "{}: {message}", runtime.name());
        assert!(
            message.contains(&format!("GRANT rds_iam TO {MIGRATOR}")),
            "{message}"
        );
        assert_eq!(server.verdicts().last().unwrap(), "refused: bad signature");

        // The master user has no rds_iam: the server takes a password from it, not a token.
        let mut env = server.iam_env(&secrets, &db);
        env.retain(|(k, _)| k != "DB_USER");
        env.push(("DB_USER".into(), server.pg.user().into()));
        let (error_type, message, log) = refused(runtime, arm64_spec(&target, env)).await?;
        logs.push_str(&log);
        logs.push_str(&message);
        assert_eq!(error_type, "Auth", "{}: {message}", runtime.name());
        assert!(!message.contains('\n'), "{message}");
        for needle in [
            "GRANT rds_iam TO postgres",
            "rds-db:connect",
            "SQLSTATE 28P01",
        ] {
            assert!(message.contains(needle), "{}: {message}", runtime.name());
        }
        for needle in ["X-Amz-Signature", "X-Amz-Credential", "Action=connect"] {
            assert!(
                !logs.contains(needle),
                "the token is in the output:\n{logs}"
            );
        }
        assert_eq!(
            secrets.request_count(),
            reads,
            "{}: DB_AUTH=iam read Secrets Manager",
            runtime.name()
        );
    }
    server.stop().await
}
