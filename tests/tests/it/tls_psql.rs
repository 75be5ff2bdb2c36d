//! psql and the function side by side on the same server certificates: for each certificate and
//! each `DB_SSLMODE`, both connect or both refuse, and every refusal of the function is one line of
//! words (`Tls`), never an OpenSSL or Rust debug dump. The certificates come from the real `openssl`
//! CLI, the first one by PostgreSQL's own documented recipe (a self-signed cert OpenSSL marks CA:TRUE).
//!
//! One difference from libpq is deliberate: libpq's `sslmode=require` turns into `verify-ca` when a
//! root certificate file exists; `DB_SSLMODE=require` never checks the chain. So psql gets
//! `PGSSLROOTCERT` for the verify modes only (and a `HOME` without `~/.postgresql/root.crt`).

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use serde_json::json;
use tests::harness::{DB, Harness, SECRET_ID, write_server_file};
use xtask::local::{
    function::{Function, Runtime},
    postgres::PgChoice,
    runtime_api::{FunctionSpec, Outcome},
};

const MODES: [&str; 4] = ["disable", "require", "verify-ca", "verify-full"];
/// The host both clients name (what verify-full checks): the server certificates are for it.
const HOST: &str = "localhost";

/// A server certificate, the bundle the clients trust, and the verdict per mode (in `MODES` order).
struct Case {
    name: &'static str,
    cert: PathBuf,
    key: PathBuf,
    bundle: PathBuf,
    connects: [bool; 4],
    /// Words the function's refusal must hold.
    refusal: &'static str,
}

fn openssl(dir: &Path, args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "openssl {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

/// A CA (`<name>.crt`, `<name>.key`) with OpenSSL's defaults (CA:TRUE).
fn ca(dir: &Path, name: &str) -> anyhow::Result<()> {
    let (crt, key, subj) = (
        format!("{name}.crt"),
        format!("{name}.key"),
        format!("/CN=tls_psql {name}"),
    );
    openssl(
        dir,
        &[
            "req", "-new", "-x509", "-days", "365", "-nodes", "-subj", &subj, "-keyout", &key,
            "-out", &crt,
        ],
    )
}

/// A leaf for `dns` signed by `ca`, valid for `days` (negative: already expired).
fn leaf(dir: &Path, name: &str, dns: &str, ca: &str, days: &str) -> anyhow::Result<()> {
    let (crt, key, csr, ext) = (
        format!("{name}.crt"),
        format!("{name}.key"),
        format!("{name}.csr"),
        format!("{name}.ext"),
    );
    std::fs::write(
        dir.join(&ext),
        format!("basicConstraints=CA:FALSE\nsubjectAltName=DNS:{dns}\n"),
    )?;
    openssl(
        dir,
        &[
            "req",
            "-new",
            "-nodes",
            "-subj",
            &format!("/CN={dns}"),
            "-keyout",
            &key,
            "-out",
            &csr,
        ],
    )?;
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &format!("{ca}.crt"),
            "-CAkey",
            &format!("{ca}.key"),
            "-CAcreateserial",
            "-days",
            days,
            "-extfile",
            &ext,
            "-out",
            &crt,
        ],
    )
}

fn cases(dir: &Path) -> anyhow::Result<Vec<Case>> {
    // PostgreSQL's documented quick self-signed certificate (server.crt / server.key), verbatim.
    openssl(
        dir,
        &[
            "req",
            "-new",
            "-x509",
            "-days",
            "365",
            "-nodes",
            "-text",
            "-out",
            "server.crt",
            "-keyout",
            "server.key",
            "-subj",
            "/CN=localhost",
        ],
    )?;
    ca(dir, "ca")?;
    ca(dir, "other-ca")?;
    leaf(dir, "leaf", HOST, "ca", "30")?;
    leaf(dir, "expired", HOST, "ca", "-1")?;
    leaf(dir, "wrong-host", "db.example.com", "ca", "30")?;
    leaf(dir, "foreign", HOST, "other-ca", "30")?;
    let p = |f: &str| dir.join(f);
    let case = |name, cert: &str, bundle: &str, connects, refusal| Case {
        name,
        cert: p(&format!("{cert}.crt")),
        key: p(&format!("{cert}.key")),
        bundle: p(bundle),
        connects,
        refusal,
    };
    Ok(vec![
        case(
            "(a) documented self-signed, trusted as its own root",
            "server",
            "server.crt",
            [true; 4],
            "",
        ),
        case(
            "(b) CA and a leaf for localhost",
            "leaf",
            "ca.crt",
            [true; 4],
            "",
        ),
        case(
            "(c) expired leaf",
            "expired",
            "ca.crt",
            [true, true, false, false],
            "the server's certificate has expired",
        ),
        case(
            "(d) leaf for another host name",
            "wrong-host",
            "ca.crt",
            [true, true, true, false],
            "the server's certificate is not for this host name",
        ),
        case(
            "(e) leaf from an unknown CA",
            "foreign",
            "ca.crt",
            [true, true, false, false],
            "the server's certificate is not signed by a CA of DB_CA_BUNDLE",
        ),
    ])
}

/// Puts `case`'s certificate and key where the server reads them, and reloads.
async fn serve(h: &Harness, case: &Case) -> anyhow::Result<()> {
    let client = h.client("postgres").await?;
    for (setting, file) in [("ssl_cert_file", &case.cert), ("ssl_key_file", &case.key)] {
        let path = h.setting(setting).await?;
        write_server_file(&client, &path, &std::fs::read_to_string(file)?).await?;
    }
    h.reload().await
}

/// psql's verdict: `Ok(())` when `select 1` ran, else its stderr. The password goes in PGPASSWORD.
fn psql(h: &Harness, home: &Path, mode: &str, bundle: &Path, extra: &str) -> Result<(), String> {
    let mut cmd = Command::new("psql");
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("PGPASSWORD", h.pg.password())
        .env("PGSSLMODE", mode)
        .env("PGCONNECT_TIMEOUT", "10")
        .args(["-X", "-w", "-q", "-At", "-v", "ON_ERROR_STOP=1"])
        .arg(format!(
            "host={HOST} port={} dbname={DB} user={} {extra}",
            h.pg.port(),
            h.pg.user()
        ))
        .args(["-c", "select 1"]);
    if mode.starts_with("verify") {
        cmd.env("PGSSLROOTCERT", bundle);
    }
    let out = cmd.output().map_err(|e| format!("running psql: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if out.status.success() && stdout.trim() == "1" {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

/// The function's refusal must be one `Tls` line of words naming the roots.
fn check_refusal(what: &str, kind: &str, msg: &str, case: &Case) {
    assert_eq!(kind, "Tls", "{what}: {msg}");
    assert!(!msg.contains('\n'), "{what}: more than one line: {msg}");
    for dump in ["Other(", "Error {", "OtherError", "ErrorStack"] {
        assert!(!msg.contains(dump), "{what}: a debug dump: {msg}");
    }
    assert!(msg.contains(case.refusal), "{what}: {msg}");
    let bundle = format!("DB_CA_BUNDLE {}", case.bundle.display());
    assert!(msg.contains(&bundle), "{what}: the roots unnamed: {msg}");
    assert!(
        msg.contains(&format!("{HOST}:")),
        "{what}: the host unnamed: {msg}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_and_the_function_agree_on_every_certificate_and_mode() -> anyhow::Result<()> {
    let h = Harness::start(&PgChoice::Local).await?;
    let dir = tempfile::tempdir()?;
    let home = tempfile::tempdir()?;
    let mut table = Vec::new();
    for case in cases(dir.path())? {
        serve(&h, &case).await?;
        for (i, mode) in MODES.into_iter().enumerate() {
            let what = format!("{} / {mode}", case.name);
            let by_psql = psql(&h, home.path(), mode, &case.bundle, "");
            let bundle = case.bundle.display().to_string();
            let by_fn = h
                .invoke(
                    &[
                        ("DB_SSLMODE", mode),
                        ("DB_CA_BUNDLE", &bundle),
                        ("DB_HOST", HOST),
                    ],
                    json!({"action": "status"}),
                )
                .await;
            table.push(format!(
                "{what}: psql {}, function {}",
                if by_psql.is_ok() {
                    "connects"
                } else {
                    "refuses"
                },
                match &by_fn {
                    Ok(_) => "connects".to_string(),
                    Err(e) => format!("refuses: {}: {e}", e.error_type()),
                }
            ));
            assert_eq!(
                by_psql.is_ok(),
                case.connects[i],
                "{what}: psql: {by_psql:?}"
            );
            match &by_fn {
                Ok(_) => assert!(case.connects[i], "{what}: the function connected"),
                Err(e) => {
                    assert!(!case.connects[i], "{what}: the function refused: {e}");
                    check_refusal(&what, e.error_type(), &e.to_string(), &case);
                }
            }
        }
    }
    println!("{}", table.join("\n"));
    h.pg.stop().await
}

/// The real bootstrap under the project's Runtime API emulator and under AWS's RIE: the documented
/// self-signed certificate connects, and each kind of refusal reads the same as in-process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bootstrap_agrees_under_both_runtimes() -> anyhow::Result<()> {
    let bootstrap = tokio::task::spawn_blocking(|| {
        xtask::test_local::build_bootstrap(xtask::test_local::Profile::Local)
    })
    .await??;
    let h = Harness::start(&PgChoice::Local).await?;
    let dir = tempfile::tempdir()?;
    let all = cases(dir.path())?;
    // (a) connects; (c), (d), (e) refuse under verify-full, each for its own reason.
    for case in [&all[0], &all[2], &all[3], &all[4]] {
        serve(&h, case).await?;
        for runtime in [Runtime::Emulator, Runtime::Rie] {
            let what = format!("{} / verify-full / {runtime:?}", case.name);
            let mut spec = FunctionSpec::new(&bootstrap, "tls-psql");
            spec.env = xtask::test_local::function_env(&h.pg, &h.secrets, DB, SECRET_ID);
            spec.env
                .retain(|(k, _)| !matches!(k.as_str(), "DB_CA_BUNDLE" | "DB_HOST" | "DB_SSLMODE"));
            spec.env.extend([
                ("DB_HOST".to_string(), HOST.to_string()),
                ("DB_SSLMODE".to_string(), "verify-full".to_string()),
                (
                    "DB_CA_BUNDLE".to_string(),
                    case.bundle.display().to_string(),
                ),
            ]);
            let mut function = Function::start(runtime, spec).await?;
            let inv = function.invoke(json!({"action": "status"})).await?;
            function.shutdown().await;
            match &inv.outcome {
                Outcome::Response(report) => {
                    assert!(case.connects[3], "{what}: connected: {report}");
                    assert_eq!(report["action"], "status", "{what}: {report}");
                }
                Outcome::FunctionError {
                    error_type,
                    error_message,
                } => {
                    assert!(!case.connects[3], "{what}: {error_type}: {error_message}");
                    check_refusal(&what, error_type, error_message, case);
                    assert!(
                        !inv.log.contains(h.pg.password()),
                        "{what}: the password in the log"
                    );
                }
                other => panic!("{what}: {other}\n{}", inv.log),
            }
        }
    }
    h.pg.stop().await
}

/// SCRAM with channel binding over the function's connector: a server that takes only
/// `hostssl … scram-sha-256`, psql with `channel_binding=require`, and tokio-postgres with
/// `ChannelBinding::Require` (SCRAM-SHA-256-PLUS or no connection) through `init_fn::session::tls`, for the
/// documented self-signed certificate (verify-full) and with `require` (no chain check).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scram_sha_256_plus_with_psql_and_the_function() -> anyhow::Result<()> {
    let h = Harness::start(&PgChoice::Local).await?;
    let dir = tempfile::tempdir()?;
    let home = tempfile::tempdir()?;
    let all = cases(dir.path())?;
    let case = &all[0];
    serve(&h, case).await?;
    let client = h.client("postgres").await?;
    let hba = h.setting("hba_file").await?;
    // The test's own sessions keep `postgres` (TLS or not); the function's database: TLS + SCRAM only.
    write_server_file(
        &client,
        &hba,
        "local all all trust\nhost postgres all all scram-sha-256\nhostssl all all all scram-sha-256\n",
    )
    .await?;
    serve(&h, case).await?; // reloads pg_hba.conf too
    psql(
        &h,
        home.path(),
        "verify-full",
        &case.bundle,
        "channel_binding=require",
    )
    .map_err(|e| anyhow::anyhow!("psql channel_binding=require: {e}"))?;
    let pem = std::fs::read(&case.bundle)?;
    for mode in [
        init_fn::config::SslMode::VerifyFull,
        init_fn::config::SslMode::Require,
    ] {
        let tls = init_fn::session::tls::MakeTlsConnector::new(mode, Some(&pem))?;
        let mut config = tokio_postgres::Config::new();
        config
            .host(HOST)
            .port(h.pg.port())
            .user(h.pg.user())
            .password(h.pg.password())
            .dbname(DB)
            .ssl_mode(tokio_postgres::config::SslMode::Require)
            .channel_binding(tokio_postgres::config::ChannelBinding::Require);
        let (session, connection) = config.connect(tls).await?;
        tokio::spawn(connection);
        let ssl: bool = session
            .query_one(
                "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
                &[],
            )
            .await?
            .get(0);
        assert!(ssl, "{mode:?}");
    }
    // Without TLS there is nothing to bind to: requiring the binding refuses (the check can fail).
    let mut plain = tokio_postgres::Config::new();
    plain
        .host(HOST)
        .port(h.pg.port())
        .user(h.pg.user())
        .password(h.pg.password())
        .dbname("postgres")
        .ssl_mode(tokio_postgres::config::SslMode::Disable)
        .channel_binding(tokio_postgres::config::ChannelBinding::Require);
    assert!(plain.connect(tokio_postgres::NoTls).await.is_err());
    // And the function itself, channel binding preferred, connects over the same settings.
    let report = h
        .invoke(
            &[
                ("DB_SSLMODE", "verify-full"),
                ("DB_CA_BUNDLE", &case.bundle.display().to_string()),
                ("DB_HOST", HOST),
            ],
            json!({"action": "status"}),
        )
        .await;
    assert!(report.is_ok(), "{:?}", report.err());
    h.pg.stop().await
}
