//! Rotation-safe secrets in `DB_AUTH=secret` mode: one warm bootstrap (the real one, under the
//! project's Runtime API emulator) keeps the secret between invocations, and when the password and
//! the secret change between two invocations the next one still logs in: the server's refusal
//! (28P01) makes it read the secret once more. A password changed without its secret is `Auth`, and
//! the next invocation after the secret catches up succeeds.

use std::time::Duration;

use serde_json::json;
use xtask::local::{
    function::{Function, Runtime},
    postgres::{PgChoice, PgServer},
    runtime_api::{FunctionSpec, Outcome},
    secrets_manager::SecretsManager,
};
use xtask::test_local;

const SECRET_ID: &str = "ca-a2a/db-password";
const DB: &str = "documents_db";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_secret_is_read_again_by_the_warm_function() -> anyhow::Result<()> {
    let bootstrap = test_local::build_local_bootstrap()?;
    let server = PgServer::start(&PgChoice::Local).await?;
    server.create_database(DB).await?;
    let secrets = SecretsManager::start().await?;
    secrets.put(SECRET_ID, server.password());
    // Opened before the rotation; stays logged in after it.
    let admin = server.client(DB).await?;

    let mut spec = FunctionSpec::new(&bootstrap, test_local::FUNCTION_NAME);
    spec.timeout = Duration::from_secs(30);
    spec.env = test_local::function_env(&server, &secrets, DB, SECRET_ID);
    let mut function = Function::start(Runtime::Emulator, spec).await?;
    let mut passwords = vec![server.password().to_string()];
    let invoke = async |function: &mut Function, action: &str| {
        let inv = function.invoke(json!({ "action": action })).await?;
        anyhow::Ok(inv)
    };

    let first = invoke(&mut function, "apply").await?;
    assert!(
        matches!(first.outcome, Outcome::Response(_)),
        "{}",
        first.log
    );
    let pid = function.pid();
    assert_eq!(secrets.request_count(), 1);
    // Warm: the secret is kept, not read again.
    let warm = invoke(&mut function, "status").await?;
    assert!(matches!(warm.outcome, Outcome::Response(_)), "{}", warm.log);
    assert_eq!(secrets.request_count(), 1);

    // RDS (or a rotation Lambda) changes the password and the secret between two invocations.
    let rotated = format!("rotated-{}", std::process::id());
    admin
        .batch_execute(&format!("ALTER ROLE postgres PASSWORD '{rotated}'"))
        .await?;
    secrets.put(SECRET_ID, &rotated);
    passwords.push(rotated);
    let after = invoke(&mut function, "status").await?;
    assert!(
        matches!(after.outcome, Outcome::Response(_)),
        "{:?}\n{}",
        after.outcome,
        after.log
    );
    assert_eq!(function.pid(), pid, "the same warm process");
    assert_eq!(secrets.request_count(), 2, "one re-read");
    assert!(
        after.log.contains("reading the secret again"),
        "{}",
        after.log
    );

    // The password changes but the secret does not (yet): one re-read, then Auth.
    let ahead = format!("ahead-{}", std::process::id());
    admin
        .batch_execute(&format!("ALTER ROLE postgres PASSWORD '{ahead}'"))
        .await?;
    passwords.push(ahead.clone());
    let refused = invoke(&mut function, "status").await?;
    assert_eq!(
        refused.error_type().as_deref(),
        Some("Auth"),
        "{}",
        refused.log
    );
    assert_eq!(secrets.request_count(), 3);
    // The secret catches up: the next invocation reads it afresh.
    secrets.put(SECRET_ID, &ahead);
    let caught_up = invoke(&mut function, "status").await?;
    assert!(
        matches!(caught_up.outcome, Outcome::Response(_)),
        "{}",
        caught_up.log
    );
    assert_eq!(function.pid(), pid);
    assert_eq!(secrets.request_count(), 4);

    for inv in [&first, &warm, &after, &refused, &caught_up] {
        let (payload, _) = inv.payload(Duration::from_secs(30));
        for password in &passwords {
            assert!(!inv.log.contains(password.as_str()), "{}", inv.log);
            assert!(!payload.to_string().contains(password.as_str()));
        }
    }
    function.shutdown().await;
    drop(admin);
    server.stop().await
}
