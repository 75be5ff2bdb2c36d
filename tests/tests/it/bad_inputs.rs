//! Every bad input gets its named error, a one-line message, and never the password; TLS modes
//! (libpq's `sslmode` against real servers, certificates swapped in) and SCRAM channel binding.

use std::time::{Duration, Instant};

use init_fn::InitError;
use serde_json::json;
use tests::harness::{self, DB, Harness, SECRET_ID, with_extra, write_server_file};

/// The error's name, with the password checked absent from everything the caller could see.
fn name_of(h: &Harness, result: Result<serde_json::Value, InitError>) -> (String, String) {
    let err = match result {
        Ok(report) => panic!("expected an error, got {report:#}"),
        Err(err) => err,
    };
    let password = h.pg.password();
    let diagnostic = lambda_runtime::Diagnostic::from(err.clone());
    for shown in [
        err.to_string(),
        format!("{err:?}"),
        diagnostic.error_message.clone(),
    ] {
        assert!(!shown.contains(password), "password leaked: {shown}");
        assert!(!shown.contains('\n'), "not one line: {shown}");
    }
    assert_plain_words(&diagnostic.error_message);
    assert_eq!(diagnostic.error_type, err.error_type());
    (err.error_type().to_string(), err.one_line())
}

/// A message for a person: the chain of causes in words, no `Debug` dump of an error value.
fn assert_plain_words(message: &str) {
    for shape in [
        "{ ",
        "DispatchFailure(",
        "ConnectorError",
        "Some(",
        "source:",
    ] {
        assert!(!message.contains(shape), "`{shape}` in: {message}");
    }
}

#[tokio::test]
async fn secret_fetch_through_an_untrusted_certificate_is_one_plain_line() -> anyhow::Result<()> {
    // An HTTPS Secrets Manager whose certificate comes from a CA the function does not trust.
    let certs = xtask::local::tls::RunCertificates::generate()?;
    let secrets = xtask::local::secrets_manager::SecretsManager::start_tls(&certs).await?;
    secrets.put(SECRET_ID, "never-served");
    let env: std::collections::HashMap<&str, String> = [
        ("DB_HOST", "localhost".to_string()),
        ("AWS_REGION", "eu-west-3".to_string()),
        ("AWS_ACCESS_KEY_ID", "AKIDLOCAL".to_string()),
        ("AWS_SECRET_ACCESS_KEY", "local".to_string()),
        ("AWS_ENDPOINT_URL_SECRETS_MANAGER", secrets.endpoint()),
    ]
    .into();
    let lookup = |k: &str| env.get(k).cloned();
    let client = init_fn::session::secret::client_from_lookup(lookup);
    let state = init_fn::State::new(
        init_fn::Config::from_lookup(lookup),
        move || client,
        init_fn::engine::run::embedded(),
    );
    let err = match harness::invoke(&state, json!({})).await {
        Ok(report) => panic!("expected SecretFetch, got {report:#}"),
        Err(err) => err,
    };
    let diagnostic = lambda_runtime::Diagnostic::from(err.clone());
    let msg = diagnostic.error_message;
    eprintln!("SecretFetch for an untrusted certificate: {msg}");
    assert_eq!(diagnostic.error_type, "SecretFetch", "{msg}");
    assert!(!msg.contains('\n'), "{msg}");
    assert_plain_words(&msg);
    assert!(
        msg.starts_with(&format!("GetSecretValue {SECRET_ID}: dispatch failure")),
        "{msg}"
    );
    assert!(msg.contains("UnknownIssuer"), "{msg}");
    assert_eq!(
        secrets.request_count(),
        0,
        "no request got past the handshake"
    );
    Ok(())
}

#[tokio::test]
async fn secret_and_auth_failures() -> anyhow::Result<()> {
    let h = Harness::from_env().await?;

    h.secrets.put(SECRET_ID, "not-the-password");
    let (kind, msg) = name_of(&h, h.invoke(&[], json!({})).await);
    assert_eq!(kind, "Auth", "{msg}");
    assert!(msg.contains("password authentication failed"), "{msg}");
    assert!(!msg.contains("not-the-password"), "{msg}");

    let (kind, msg) = name_of(
        &h,
        h.invoke(&[("DB_SECRET_ID", "ca-a2a/no-such-secret")], json!({}))
            .await,
    );
    assert_eq!(kind, "SecretFetch", "{msg}");
    assert!(
        msg.contains("ResourceNotFoundException") && msg.contains("ca-a2a/no-such-secret"),
        "{msg}"
    );
    // The service's code, its message and the request id, nothing else.
    assert!(
        msg.starts_with(
            "GetSecretValue ca-a2a/no-such-secret: ResourceNotFoundException: \
             Secrets Manager can't find the specified secret. (request id "
        ),
        "{msg}"
    );

    h.secrets.put(
        SECRET_ID,
        &format!(r#"{{"username":"postgres","pass":"{}"}}"#, h.pg.password()),
    );
    let (kind, msg) = name_of(&h, h.invoke(&[], json!({})).await);
    assert_eq!(kind, "SecretFormat", "{msg}");
    assert!(msg.contains("without a \"password\""), "{msg}");

    h.secrets.put(SECRET_ID, "");
    let (kind, msg) = name_of(&h, h.invoke(&[], json!({})).await);
    assert_eq!(kind, "SecretFormat", "{msg}");
    assert!(msg.contains("is empty"), "{msg}");

    // Nothing of any of that touched the database.
    assert!(h.ledger(DB).await?.is_empty());
    Ok(())
}

#[tokio::test]
async fn rds_managed_json_secret_supplies_the_connection() -> anyhow::Result<()> {
    let h = Harness::from_env().await?;
    let secret = json!({
        "engine": "postgres", "username": h.pg.user(), "password": h.pg.password(),
        "host": h.pg.host(), "port": h.pg.port(), "dbname": DB,
    });
    h.secrets.put("rds!db-1234", &secret.to_string());
    let arn = h.secrets.arn("rds!db-1234").unwrap();
    // Only the secret ARN and TLS settings in the environment: host, port, db and user come from it.
    let report = h
        .invoke(
            &[
                ("DB_HOST", ""),
                ("DB_PORT", ""),
                ("DB_NAME", ""),
                ("DB_USER", ""),
                ("DB_SECRET_ID", &arn),
            ],
            json!({}),
        )
        .await?;
    assert_eq!(harness::states(&report), ["applied"]);
    Ok(())
}

/// A user the server knows but that may not connect to the database: PostgreSQL refuses the connection
/// itself with 42501 (`permission denied for database`), which is the user's rights, `Auth`, and no
/// retry mends it.
#[tokio::test]
async fn a_user_without_connect_on_the_database_is_auth_and_not_retried() -> anyhow::Result<()> {
    let h = Harness::from_env().await?;
    let password = format!("nc-{}", std::process::id());
    h.client("postgres")
        .await?
        .batch_execute(&format!(
            "CREATE ROLE no_connect LOGIN PASSWORD '{password}'; \
             REVOKE CONNECT ON DATABASE {DB} FROM PUBLIC;"
        ))
        .await?;
    h.secrets.put(SECRET_ID, &password);
    let result = h.invoke(&[("DB_USER", "no_connect")], json!({})).await;
    let retryable = result.as_ref().err().map(InitError::retryable);
    let (kind, msg) = name_of(&h, result);
    assert_eq!(kind, "Auth", "{msg}");
    assert_eq!(retryable, Some(false), "{msg}");
    assert!(
        msg.contains("user no_connect")
            && msg.contains("permission denied for database")
            && msg.contains("SQLSTATE 42501"),
        "{msg}"
    );
    assert!(!msg.contains(&password), "{msg}");
    Ok(())
}

#[tokio::test]
async fn unreachable_and_silent_hosts_fail_within_the_connect_timeout() -> anyhow::Result<()> {
    let h = Harness::from_env().await?;
    // Accepts TCP connections (kernel backlog) but never answers the startup packet.
    let silent = std::net::TcpListener::bind("127.0.0.1:0")?;
    let port = silent.local_addr()?.port().to_string();
    let started = Instant::now();
    let (kind, msg) = name_of(
        &h,
        h.invoke(
            &[
                ("DB_HOST", "127.0.0.1"),
                ("DB_PORT", &port),
                ("DB_CONNECT_TIMEOUT_S", "2"),
            ],
            json!({}),
        )
        .await,
    );
    let took = started.elapsed();
    assert_eq!(kind, "Connect", "{msg}");
    assert!(msg.contains("DB_CONNECT_TIMEOUT_S"), "{msg}");
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(8),
        "took {took:?}"
    );

    // Nothing listens: refused at once.
    drop(silent);
    let (kind, msg) = name_of(
        &h,
        h.invoke(&[("DB_HOST", "127.0.0.1"), ("DB_PORT", &port)], json!({}))
            .await,
    );
    assert_eq!(kind, "Connect", "{msg}");
    Ok(())
}

#[tokio::test]
async fn tls_modes_and_certificate_checks() -> anyhow::Result<()> {
    let h = Harness::from_env().await?;
    // verify-full with the run's CA and the name the certificate carries.
    let report = h.invoke(&[], json!({"action": "status"})).await;
    assert!(report.is_ok(), "verify-full: {:?}", report.err());
    // The certificate names `localhost`; 127.0.0.1 is the same server under a name it does not carry.
    let (kind, msg) = name_of(
        &h,
        h.invoke(&[("DB_HOST", "127.0.0.1")], json!({"action": "status"}))
            .await,
    );
    assert_eq!(kind, "Tls", "{msg}");
    assert!(
        msg.contains("the server's certificate is not for this host name"),
        "{msg}"
    );
    // Without DB_CA_BUNDLE, verify-full trusts only the compiled-in Amazon RDS CAs.
    let (kind, msg) = name_of(
        &h,
        h.invoke(&[("DB_CA_BUNDLE", "")], json!({"action": "status"}))
            .await,
    );
    assert_eq!(kind, "Tls", "{msg}");
    assert!(msg.contains("Amazon RDS CA bundle"), "{msg}");
    // Another CA than the one that signed the server: verify-ca and verify-full refuse the chain.
    let other_ca = tempfile::NamedTempFile::new()?;
    std::fs::write(
        other_ca.path(),
        xtask::local::tls::RunCertificates::generate()?.ca_pem,
    )?;
    let other_ca = other_ca.path().display().to_string();
    for mode in ["verify-ca", "verify-full"] {
        let overrides = [("DB_SSLMODE", mode), ("DB_CA_BUNDLE", other_ca.as_str())];
        let (kind, msg) = name_of(&h, h.invoke(&overrides, json!({"action": "status"})).await);
        assert_eq!(kind, "Tls", "{mode}: {msg}");
        assert!(msg.contains("not signed by a CA of DB_CA_BUNDLE"), "{msg}");
    }
    // verify-ca checks the chain but not the name; require checks neither; disable is plain text.
    for (mode, host) in [
        ("verify-ca", "127.0.0.1"),
        ("require", "127.0.0.1"),
        ("disable", "localhost"),
    ] {
        let overrides = [("DB_SSLMODE", mode), ("DB_HOST", host)];
        let report = h.invoke(&overrides, json!({"action": "status"})).await;
        assert!(report.is_ok(), "{mode}: {:?}", report.err());
    }
    Ok(())
}

#[tokio::test]
async fn require_accepts_a_self_signed_server_that_verify_ca_refuses() -> anyhow::Result<()> {
    let h = Harness::from_env().await?;
    let (cert, key) = xtask::local::tls::self_signed_server()?;
    let client = h.client("postgres").await?;
    write_server_file(&client, &h.setting("ssl_cert_file").await?, &cert).await?;
    write_server_file(&client, &h.setting("ssl_key_file").await?, &key).await?;
    h.reload().await?;
    let report = h
        .invoke(&[("DB_SSLMODE", "require")], json!({"action": "status"}))
        .await;
    assert!(report.is_ok(), "require: {:?}", report.err());
    for mode in ["verify-ca", "verify-full"] {
        let (kind, msg) = name_of(
            &h,
            h.invoke(&[("DB_SSLMODE", mode)], json!({"action": "status"}))
                .await,
        );
        assert_eq!(kind, "Tls", "{mode}: {msg}");
        assert!(
            msg.contains("the server's certificate is self-signed and not in the trusted CAs")
                && msg.contains("(checked against DB_CA_BUNDLE "),
            "{msg}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn disable_against_a_server_that_takes_only_tls_is_a_tls_error() -> anyhow::Result<()> {
    let h = Harness::from_env().await?;
    // Plain text stays open to the `postgres` database only, for this test's own session.
    let hba = "local all all trust\n\
               host postgres all all scram-sha-256\n\
               hostssl all all all scram-sha-256\n";
    let client = h.client("postgres").await?;
    write_server_file(&client, &h.setting("hba_file").await?, hba).await?;
    h.reload().await?;
    let (kind, msg) = name_of(
        &h,
        h.invoke(&[("DB_SSLMODE", "disable")], json!({"action": "status"}))
            .await,
    );
    assert_eq!(kind, "Tls", "{msg}");
    assert!(
        msg.contains("no encryption") && msg.contains("DB_SSLMODE=verify-full"),
        "{msg}"
    );
    let report = h.invoke(&[], json!({"action": "status"})).await;
    assert!(report.is_ok(), "verify-full: {:?}", report.err());
    Ok(())
}

#[tokio::test]
async fn scram_channel_binding_uses_the_server_certificate() -> anyhow::Result<()> {
    let h = Harness::from_env().await?;
    let ca = std::fs::read(h.pg.ca_bundle_path().expect("the run's CA"))?;
    let tls = init_fn::session::tls::MakeTlsConnector::new(
        init_fn::config::SslMode::VerifyFull,
        Some(ca.as_slice()),
    )?;
    // `Require`: SCRAM-SHA-256-PLUS or nothing; the server checks the certificate hash we send.
    let mut config = tokio_postgres::Config::new();
    config
        .host(h.pg.host())
        .port(h.pg.port())
        .user(h.pg.user())
        .password(h.pg.password())
        .dbname(DB)
        .ssl_mode(tokio_postgres::config::SslMode::Require)
        .channel_binding(tokio_postgres::config::ChannelBinding::Require);
    let (client, connection) = config.connect(tls).await?;
    tokio::spawn(connection);
    let ssl: bool = client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await?
        .get(0);
    assert!(ssl);
    Ok(())
}

#[tokio::test]
async fn bad_events_and_config() -> anyhow::Result<()> {
    let h = Harness::from_env().await?;
    for event in [
        json!({"action": "drop"}),
        json!({"action": "apply", "force": true}),
        json!("apply"),
        json!([1]),
    ] {
        let (kind, msg) = name_of(&h, h.invoke(&[], event.clone()).await);
        assert_eq!(kind, "InvalidEvent", "{event}: {msg}");
    }
    let (kind, msg) = name_of(&h, h.invoke(&[("DB_SSLMODE", "prefer")], json!({})).await);
    assert_eq!(kind, "Config", "{msg}");
    assert!(msg.contains("DB_SSLMODE"), "{msg}");
    let (kind, msg) = name_of(&h, h.invoke(&[("DB_HOST", "")], json!({})).await);
    assert_eq!(kind, "Config", "{msg}");
    assert!(msg.contains("DB_HOST"), "{msg}");
    assert!(h.ledger(DB).await?.is_empty());
    Ok(())
}

#[tokio::test]
async fn an_edited_applied_migration_is_refused_and_nothing_is_applied() -> anyhow::Result<()> {
    let h = Harness::from_env().await?;
    h.invoke(&[], json!({})).await?;
    let mut edited = with_extra(&[(2, "add_audit", "CREATE TABLE audit (id int);")]);
    edited[0] = init_fn::engine::run::Migration::new(
        1,
        "initial_schema",
        &format!("{}\n-- edited\n", edited[0].sql),
    );
    for action in ["apply", "plan", "status", "verify"] {
        let (kind, msg) = name_of(
            &h,
            harness::invoke(&h.state(&[], edited.clone()), json!({"action": action})).await,
        );
        assert_eq!(kind, "ChecksumMismatch", "{action}: {msg}");
        assert!(msg.contains("migration 1 (initial_schema)"), "{msg}");
    }
    assert_eq!(
        h.ledger(DB).await?.len(),
        1,
        "0002 must not have been applied"
    );
    assert!(!h.relations(DB).await?.contains(&"audit".to_string()));
    Ok(())
}

#[tokio::test]
async fn a_migration_whose_sql_fails_names_version_and_sqlstate() -> anyhow::Result<()> {
    let h = Harness::from_env().await?;
    let broken = with_extra(&[(2, "typo", "CREATE TABLEE audit (id int);")]);
    let (kind, msg) = name_of(&h, harness::invoke(&h.state(&[], broken), json!({})).await);
    assert_eq!(kind, "MigrationFailed", "{msg}");
    assert!(
        msg.contains("migration 2 (typo)") && msg.contains("SQLSTATE 42601"),
        "{msg}"
    );
    Ok(())
}
