//! `cargo xtask test-local`: the release bootstrap against real Postgres, run exactly as Lambda
//! would (Runtime API emulator) with a built-in Secrets Manager; the scenario's reports are
//! checked against snapshots in `tests/snapshots/`. The `tests` crate runs the same scenario.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};
use xshell::{Shell, cmd};

use crate::build::Arch;
use crate::local::function::{Function, Runtime};
use crate::local::postgres::{DEFAULT_IMAGE, PgChoice, PgServer};
use crate::local::runtime_api::{FunctionSpec, Invocation, Outcome};
use crate::local::secrets_manager::SecretsManager;

/// The deployed function's name (from the seed).
pub const FUNCTION_NAME: &str = "ca-a2a-db-init";
/// The secret the function reads by default (from the seed).
pub const SECRET_ID: &str = "ca-a2a/db-password";
/// A second secret holding a wrong password, for the `Auth` step.
pub const WRONG_SECRET_ID: &str = "ca-a2a/db-password-wrong";
const WRONG_PASSWORD: &str = "not-the-password";
/// The database the contract defaults to.
pub const DATABASE: &str = "documents_db";

/// Run the release bootstrap against real Postgres with emulated Lambda and Secrets Manager,
/// and check its reports against the snapshots
#[derive(clap::Args)]
pub struct TestLocal {
    /// Postgres to run against: auto, docker, local, or a postgres:// URL (append
    /// `?sslmode=verify-full&sslrootcert=PATH` for a server with its own CA)
    #[arg(long, default_value = "auto")]
    postgres: String,
    /// Image for `--postgres docker` (and auto when Docker answers)
    #[arg(long, default_value = DEFAULT_IMAGE)]
    image: String,
    /// `host`: the native release build; `arm64`: the Lambda arm64 bootstrap under qemu-user
    #[arg(long, value_enum, default_value = "host")]
    arch: TargetArch,
    /// `emulator`: the project's Runtime API emulator; `rie`: AWS's Runtime Interface Emulator
    /// (`aws-lambda-rie`, fetched from the aws-sam-cli wheel into .venv/rie on first use)
    #[arg(long, value_enum, default_value = "emulator")]
    runtime: Runtime,
    /// Print each report as raw JSON as well as the summary
    #[arg(long)]
    json: bool,
    /// Accept the current reports: (re)write the snapshots (never under CI)
    #[arg(long)]
    update_snapshots: bool,
    /// Use the existing bootstrap instead of building it
    #[arg(long)]
    no_build: bool,
    /// Run the exact shipped build (`[profile.release]`: fat LTO, one codegen unit) instead of the
    /// quick-to-rebuild `[profile.local]` (same code and features). `--arch arm64` is always release.
    #[arg(long)]
    release: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum TargetArch {
    Host,
    Arm64,
}

/// The bootstrap to run and how to run it.
#[derive(Clone, Debug)]
pub struct Target {
    pub bootstrap: PathBuf,
    /// E.g. `["qemu-aarch64-static"]` for an arm64 bootstrap on an x86_64 machine.
    pub wrapper: Option<Vec<String>>,
    /// Extra variables for the process (e.g. `QEMU_LD_PREFIX`).
    pub env: Vec<(String, String)>,
}

impl Target {
    /// The native release build, `target/release/init-fn`.
    pub fn host(bootstrap: PathBuf) -> Target {
        Target {
            bootstrap,
            wrapper: None,
            env: Vec::new(),
        }
    }

    /// An aarch64 bootstrap under `qemu-aarch64-static` with the cross glibc.
    pub fn arm64(bootstrap: PathBuf) -> Target {
        Target {
            bootstrap,
            wrapper: Some(vec!["qemu-aarch64-static".to_string()]),
            env: vec![(
                "QEMU_LD_PREFIX".to_string(),
                "/usr/aarch64-linux-gnu".to_string(),
            )],
        }
    }
}

/// Which cargo profile the host bootstrap is built with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Profile {
    /// `[profile.local]`: release settings without fat LTO, incremental; seconds to rebuild.
    Local,
    /// `[profile.release]`: exactly what ships to Lambda.
    Release,
}

impl Profile {
    pub fn name(self) -> &'static str {
        match self {
            Profile::Local => "local",
            Profile::Release => "release",
        }
    }

    /// Where cargo puts the host `init-fn` of this profile.
    pub fn bootstrap_path(self) -> PathBuf {
        crate::build::target_dir().join(self.name()).join("init-fn")
    }
}

/// `cargo build --profile <profile> -p init-fn` for this machine; returns the binary's path.
pub fn build_bootstrap(profile: Profile) -> anyhow::Result<PathBuf> {
    let sh = Shell::new()?;
    let cargo = crate::cargo();
    sh.change_dir(crate::project_root());
    let name = profile.name();
    let openssl = crate::doctor::Piece::OpenSsl.check(&mut Default::default());
    anyhow::ensure!(
        openssl.ok,
        "test-local: the host bootstrap links the system OpenSSL ({}): {}",
        openssl.detail,
        crate::doctor::fixes(&[crate::doctor::Piece::OpenSsl]).join("; ")
    );
    if !profile.bootstrap_path().exists() {
        eprintln!("{}", crate::build::FIRST_BUILD_NOTE);
    }
    // Not --quiet: cargo's progress (or its Compiling lines off a tty) shows the build is alive.
    crate::without_package_env(cmd!(sh, "{cargo} build --profile {name} -p init-fn"))
        .run()
        .with_context(|| format!("test-local: build the bootstrap ({name} profile)"))?;
    Ok(profile.bootstrap_path())
}

/// `cargo build --release -p init-fn`; returns `target/release/init-fn`.
pub fn build_release_bootstrap() -> anyhow::Result<PathBuf> {
    build_bootstrap(Profile::Release)
}

/// One scenario step: the event sent and what came back.
pub struct Step {
    /// Snapshot name suffix, e.g. `apply_fresh`.
    pub name: &'static str,
    pub event: Value,
    pub invocation: Invocation,
    /// The Invoke API payload: the report, or `{"errorType", "errorMessage"}`.
    pub payload: Value,
    /// What the step expected, when it got something else.
    pub problem: Option<String>,
    /// Time since the scenario started, when the step finished.
    pub elapsed: Duration,
}

/// The outcome of [`run_scenario`].
pub struct Scenario {
    pub provider: &'static str,
    pub database: String,
    /// The server's port (redacted from error messages).
    pub port: u16,
    pub steps: Vec<Step>,
}

impl Scenario {
    /// Every step did what it should (snapshots aside).
    pub fn problems(&self) -> Vec<String> {
        self.steps
            .iter()
            .filter_map(|s| s.problem.as_ref().map(|p| format!("{}: {p}", s.name)))
            .collect()
    }
}

/// The function's environment for `server`: the contract's `DB_*` variables, and the
/// emulated Secrets Manager.
pub fn function_env(
    server: &PgServer,
    secrets: &SecretsManager,
    database: &str,
    secret_id: &str,
) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = vec![
        ("DB_HOST".into(), server.host().into()),
        ("DB_PORT".into(), server.port().to_string()),
        ("DB_NAME".into(), database.into()),
        ("DB_USER".into(), server.user().into()),
        ("DB_SECRET_ID".into(), secret_id.into()),
        ("DB_SSLMODE".into(), server.sslmode().into()),
        ("DB_CONNECT_TIMEOUT_S".into(), "10".into()),
        ("DB_LOCK_TIMEOUT_S".into(), "30".into()),
        ("AWS_REGION".into(), "eu-west-3".into()),
        (
            "AWS_ENDPOINT_URL_SECRETS_MANAGER".into(),
            secrets.endpoint(),
        ),
    ];
    if let Some(ca) = server.ca_bundle_path() {
        env.push(("DB_CA_BUNDLE".into(), ca.display().to_string()));
    }
    env
}

/// The database a run uses: `documents_db` on a server of its own, a fresh uniquely named one
/// on a server given by URL (so an existing `documents_db` there is never touched).
pub fn scenario_database(server: &PgServer) -> String {
    if server.kind() == "url" {
        format!(
            "init_fn_test_{}",
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        )
    } else {
        DATABASE.to_string()
    }
}

/// Fresh apply → rerun → status → verify → plan (one warm process, as Lambda reuses it), then
/// an invocation whose secret holds a wrong password (a cold process; expects `Auth`).
/// `on_step` sees each step as it finishes (progress output).
pub async fn run_scenario(
    server: &PgServer,
    target: &Target,
    on_step: impl FnMut(&Step),
) -> anyhow::Result<Scenario> {
    run_scenario_under(Runtime::Emulator, server, target, on_step).await
}

/// [`run_scenario`] under the given runtime (same steps, same expectations).
pub async fn run_scenario_under(
    runtime: Runtime,
    server: &PgServer,
    target: &Target,
    mut on_step: impl FnMut(&Step),
) -> anyhow::Result<Scenario> {
    let started = Instant::now();
    let database = scenario_database(server);
    server.create_database(&database).await?;
    let secrets = SecretsManager::start().await?;
    secrets.put(SECRET_ID, server.password());
    secrets.put(WRONG_SECRET_ID, WRONG_PASSWORD);

    let spec = |secret_id: &str| {
        let mut spec = FunctionSpec::new(&target.bootstrap, FUNCTION_NAME);
        spec.wrapper = target.wrapper.clone();
        spec.env = target.env.clone();
        spec.env
            .extend(function_env(server, &secrets, &database, secret_id));
        spec
    };

    let plan: [(&'static str, Value, Expect); 5] = [
        ("apply_fresh", json!({}), Expect::Report("apply")),
        (
            "apply_rerun",
            json!({"action": "apply"}),
            Expect::Report("apply"),
        ),
        (
            "status",
            json!({"action": "status"}),
            Expect::Report("status"),
        ),
        (
            "verify",
            json!({"action": "verify"}),
            Expect::Report("verify"),
        ),
        ("plan", json!({"action": "plan"}), Expect::Report("plan")),
    ];
    let mut steps = Vec::new();
    let mut function = Function::start(runtime, spec(SECRET_ID)).await?;
    for (name, event, expect) in plan {
        let step = run_step(&mut function, name, event, expect, server, started).await?;
        on_step(&step);
        steps.push(step);
    }
    function.shutdown().await;

    let mut wrong = Function::start(runtime, spec(WRONG_SECRET_ID)).await?;
    let step = run_step(
        &mut wrong,
        "bad_password",
        json!({"action": "apply"}),
        Expect::Error("Auth"),
        server,
        started,
    )
    .await?;
    on_step(&step);
    steps.push(step);
    wrong.shutdown().await;

    if server.kind() == "url" {
        // This run created it; nothing else on that server is dropped.
        let client = server.client("postgres").await?;
        client
            .batch_execute(&format!("DROP DATABASE \"{database}\""))
            .await
            .with_context(|| format!("test-local: drop the run's database {database}"))?;
    }
    Ok(Scenario {
        provider: server.kind(),
        database,
        port: server.port(),
        steps,
    })
}

enum Expect {
    Report(&'static str),
    Error(&'static str),
}

async fn run_step(
    function: &mut Function,
    name: &'static str,
    event: Value,
    expect: Expect,
    server: &PgServer,
    started: Instant,
) -> anyhow::Result<Step> {
    let invocation = function.invoke(event.clone()).await?;
    let (payload, _) = invocation.payload(function.spec().timeout);
    let mut problem = match (&expect, &invocation.outcome) {
        (Expect::Report(action), Outcome::Response(v)) => {
            (v["status"] != "ok" || v["action"] != *action).then(|| {
                format!(
                    "expected an ok `{action}` report, got status {} action {}",
                    v["status"], v["action"]
                )
            })
        }
        (Expect::Error(want), Outcome::FunctionError { error_type, .. }) => {
            (error_type != want).then(|| format!("expected errorType {want}, got {error_type}"))
        }
        (Expect::Report(action), _) => Some(format!(
            "expected an ok `{action}` report, got {}",
            describe(&invocation)
        )),
        (Expect::Error(want), _) => Some(format!(
            "expected errorType {want}, got {}",
            describe(&invocation)
        )),
    };
    // Neither the real password nor the wrong one the Auth step uses may leak.
    let leaked = [server.password(), WRONG_PASSWORD]
        .into_iter()
        .filter(|p| !p.is_empty())
        .any(|p| invocation.log.contains(p) || payload.to_string().contains(p));
    if leaked {
        problem = Some("a database password appears in the log or the payload".to_string());
    }
    Ok(Step {
        name,
        event,
        invocation,
        payload,
        problem,
        elapsed: started.elapsed(),
    })
}

fn describe(invocation: &Invocation) -> String {
    match &invocation.outcome {
        Outcome::Response(v) => format!("a response {v}"),
        Outcome::FunctionError {
            error_type,
            error_message,
        } => format!("{error_type}: {error_message}"),
        Outcome::Timeout => "a timeout (Sandbox.Timedout)".to_string(),
        Outcome::Crash { status } => format!("a crash ({status})"),
        Outcome::InitError {
            error_type,
            error_message,
        } => format!("an init error {error_type}: {error_message}"),
    }
}

// ---------------------------------------------------------------------------------------------
// snapshots

/// The snapshot directory, `tests/snapshots/`.
pub fn snapshot_dir() -> PathBuf {
    crate::project_root().join("tests/snapshots")
}

/// The volatile parts of a payload replaced: durations, server version, timestamps, the
/// server's port in error messages; a URL run's database name becomes `documents_db`.
pub fn redact(payload: &Value, database: &str, port: u16) -> Value {
    let mut v = payload.clone();
    if let Some(obj) = v.as_object_mut() {
        if let Some(message) = obj.get("errorMessage").and_then(Value::as_str) {
            let message = message
                .replace(&format!(":{port}/"), ":[port]/")
                .replace(&format!(":{port} "), ":[port] ")
                .replace(database, DATABASE);
            obj.insert("errorMessage".into(), json!(message));
        }
        if obj.get("duration_ms").is_some_and(Value::is_number) {
            obj.insert("duration_ms".into(), json!("[ms]"));
        }
        if obj.contains_key("server_version") {
            obj.insert("server_version".into(), json!("[version]"));
        }
        if obj.get("database").and_then(Value::as_str) == Some(database) {
            obj.insert("database".into(), json!(DATABASE));
        }
        if let Some(migrations) = obj.get_mut("migrations").and_then(Value::as_array_mut) {
            for m in migrations {
                if m.get("duration_ms").is_some_and(Value::is_number) {
                    m["duration_ms"] = json!("[ms]");
                }
            }
        }
    }
    redact_timestamps(&mut v);
    v
}

fn redact_timestamps(v: &mut Value) {
    match v {
        Value::Object(map) => {
            for (k, val) in map.iter_mut() {
                if k == "applied_at" && !val.is_null() {
                    *val = json!("[timestamp]");
                } else {
                    redact_timestamps(val);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact_timestamps),
        _ => {}
    }
}

/// What to do with a snapshot that differs or is missing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SnapshotMode {
    /// Fail; write `NAME.snap.new` for `cargo insta review` (not under CI).
    Check,
    /// Write `NAME.snap` (refused under CI).
    Update,
    /// Compare only; write nothing.
    Compare,
}

/// The result of comparing one step with its snapshot.
pub enum SnapshotResult {
    Matched,
    Written,
    Mismatch { diff: String },
    Missing,
}

/// File name of a step's snapshot: `test_local__<step>.snap`.
pub fn snapshot_path(step: &str) -> PathBuf {
    snapshot_dir().join(format!("test_local__{step}.snap"))
}

/// Compare `value` with the insta-format snapshot of `step` (pretty JSON after the header).
pub fn check_snapshot(
    step: &str,
    value: &Value,
    mode: SnapshotMode,
) -> anyhow::Result<SnapshotResult> {
    let path = snapshot_path(step);
    let new_path = path.with_extension("snap.new");
    let body = serde_json::to_string_pretty(value)?;
    let file = format!(
        "---\nsource: xtask/src/test_local.rs\nexpression: \"test-local step {step}\"\n---\n{body}\n"
    );
    let existing = std::fs::read_to_string(&path).ok();
    let old_body = existing.as_deref().map(snapshot_body);
    if old_body.as_deref() == Some(body.trim_end()) {
        let _ = std::fs::remove_file(&new_path);
        return Ok(SnapshotResult::Matched);
    }
    if mode == SnapshotMode::Update {
        if crate::is_ci() {
            bail!("test-local: refusing to write snapshots under CI");
        }
        std::fs::create_dir_all(snapshot_dir())?;
        std::fs::write(&path, file)?;
        let _ = std::fs::remove_file(&new_path);
        return Ok(SnapshotResult::Written);
    }
    if mode == SnapshotMode::Check && !crate::is_ci() {
        std::fs::write(&new_path, &file)?;
    }
    Ok(match old_body {
        None => SnapshotResult::Missing,
        Some(old) => SnapshotResult::Mismatch {
            diff: similar::TextDiff::from_lines(old.as_str(), body.trim_end())
                .unified_diff()
                .context_radius(3)
                .header("snapshot", "this run")
                .to_string(),
        },
    })
}

/// The content of an insta snapshot file (after the `---` header).
fn snapshot_body(file: &str) -> String {
    let rest = file.strip_prefix("---\n").unwrap_or(file);
    match rest.split_once("\n---\n") {
        Some((_, body)) => body.trim_end().to_string(),
        None => rest.trim_end().to_string(),
    }
}

// ---------------------------------------------------------------------------------------------
// printing

/// One readable line per report: what happened to migrations, objects, tables and indexes.
pub fn summarize(payload: &Value) -> String {
    if let Some(error_type) = payload["errorType"].as_str() {
        return format!(
            "error {error_type}: {}",
            payload["errorMessage"].as_str().unwrap_or("")
        );
    }
    let list = |key: &str| payload[key].as_array().cloned().unwrap_or_default();
    let migrations: Vec<String> = list("migrations")
        .iter()
        .map(|m| {
            format!(
                "{:04} {} {}",
                m["version"].as_u64().unwrap_or(0),
                m["name"].as_str().unwrap_or("?"),
                m["state"].as_str().unwrap_or("?")
            )
        })
        .collect();
    let mut outcomes: Vec<(String, usize)> = Vec::new();
    for o in list("objects") {
        let outcome = o["outcome"].as_str().unwrap_or("?").to_string();
        match outcomes.iter_mut().find(|(k, _)| *k == outcome) {
            Some((_, n)) => *n += 1,
            None => outcomes.push((outcome, 1)),
        }
    }
    let objects: Vec<String> = outcomes.iter().map(|(k, n)| format!("{n} {k}")).collect();
    let tables: Vec<String> = list("tables")
        .iter()
        .map(|t| match t["rows"].as_i64() {
            Some(rows) if t["rows_exact"] == false => {
                format!(
                    "{} (~{rows} rows, estimate)",
                    t["name"].as_str().unwrap_or("?")
                )
            }
            Some(rows) => format!("{} ({rows} rows)", t["name"].as_str().unwrap_or("?")),
            None => format!("{} (missing)", t["name"].as_str().unwrap_or("?")),
        })
        .collect();
    let indexes = list("indexes");
    let present = indexes.iter().filter(|i| i["present"] == true).count();
    let plan = crate::plan_view::render(payload, "    ");
    format!(
        "{} {}: migrations [{}]; objects: {}; tables: {}; indexes {present}/{} present; server {}{}{}",
        payload["status"].as_str().unwrap_or("?"),
        payload["action"].as_str().unwrap_or("?"),
        migrations.join(", "),
        if objects.is_empty() {
            "none".to_string()
        } else {
            objects.join(", ")
        },
        tables.join(", "),
        indexes.len(),
        payload["server_version"].as_str().unwrap_or("?"),
        if plan.is_empty() { "" } else { "\n" },
        plan.trim_end(),
    )
}

fn progress(elapsed: Duration, line: &str) {
    println!("[{:>6.2}s] {line}", elapsed.as_secs_f64());
}

// ---------------------------------------------------------------------------------------------
// the command

impl TestLocal {
    pub fn run(self, sh: &Shell) -> anyhow::Result<()> {
        let started = Instant::now();
        let choice: PgChoice = self.postgres.parse()?;
        let choice = choice.with_image(&self.image);
        if self.update_snapshots && crate::is_ci() {
            bail!(
                "test-local: --update-snapshots is refused under CI (snapshots are reviewed, not written by CI)"
            );
        }

        let profile = if self.release || self.arch == TargetArch::Arm64 {
            Profile::Release
        } else {
            Profile::Local
        };
        let target = if self.no_build {
            match self.arch {
                TargetArch::Host => Target::host(profile.bootstrap_path()),
                TargetArch::Arm64 => {
                    Target::arm64(crate::build::lambda_dir(Arch::Arm64).join("bootstrap"))
                }
            }
        } else {
            progress(
                started.elapsed(),
                &match (self.arch, profile) {
                    (TargetArch::Arm64, _) => "build: Lambda arm64 bootstrap (release profile, cargo-zigbuild)".to_string(),
                    (TargetArch::Host, Profile::Local) => "build: host bootstrap, profile local (release code, no LTO; --release for the shipped profile)".to_string(),
                    (TargetArch::Host, Profile::Release) => "build: host bootstrap, profile release (as shipped)".to_string(),
                },
            );
            match self.arch {
                TargetArch::Host => Target::host(build_bootstrap(profile)?),
                TargetArch::Arm64 => Target::arm64(crate::build::bootstrap(sh, Arch::Arm64)?),
            }
        };
        if self.arch == TargetArch::Arm64 {
            cmd!(sh, "qemu-aarch64-static --version")
                .quiet()
                .ignore_stdout()
                .run()
                .context("test-local --arch arm64 needs qemu-aarch64-static (Debian: qemu-user-static, libc6-arm64-cross)")?;
        }
        progress(
            started.elapsed(),
            &format!("bootstrap: {}", display(&target.bootstrap)),
        );

        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        let image = self.image.clone();
        let json_out = self.json;
        let runtime_choice = self.runtime;
        let scenario = runtime.block_on(async move {
            // `--image` also applies when auto picks Docker.
            let auto_image = matches!(choice, PgChoice::Auto) && image != DEFAULT_IMAGE;
            let server = if auto_image && crate::local::postgres::docker_answers().await {
                PgServer::start(&PgChoice::Docker { image }).await?
            } else {
                PgServer::start(&choice).await?
            };
            let version = server.server_version().await.unwrap_or_default();
            progress(
                started.elapsed(),
                &format!(
                    "postgres: {} on {}:{} (PostgreSQL {version}, TLS {})",
                    server.kind(),
                    server.host(),
                    server.port(),
                    server.sslmode()
                ),
            );
            progress(
                started.elapsed(),
                &format!("runtime: {}", runtime_choice.name()),
            );
            let scenario = run_scenario_under(runtime_choice, &server, &target, |step| {
                let inv = &step.invocation;
                let timing = format!(
                    "{}{:.0} ms{}",
                    if inv.cold { "cold, " } else { "" },
                    inv.total.as_secs_f64() * 1000.0,
                    inv.max_rss_kb.map_or(String::new(), |kb| format!(
                        ", rss {:.1} MiB",
                        kb as f64 / 1024.0
                    )),
                );
                progress(
                    started.elapsed(),
                    &format!("{:<13} {}  [{timing}]", step.name, summarize(&step.payload)),
                );
                if json_out {
                    println!(
                        "{}",
                        serde_json::to_string_pretty(&step.payload).unwrap_or_default()
                    );
                }
                if let Some(problem) = &step.problem {
                    println!(
                        "    FAILED: {problem}\n    log:\n{}",
                        indent(&step.invocation.log)
                    );
                }
            })
            .await;
            server.stop().await?;
            scenario
        })?;

        let mode = if self.update_snapshots {
            SnapshotMode::Update
        } else {
            SnapshotMode::Check
        };
        let mut failures = scenario.problems();
        let mut written = 0;
        for step in &scenario.steps {
            match check_snapshot(
                step.name,
                &redact(&step.payload, &scenario.database, scenario.port),
                mode,
            )? {
                SnapshotResult::Matched => {}
                SnapshotResult::Written => written += 1,
                SnapshotResult::Missing => failures.push(format!(
                    "{}: no snapshot at {}",
                    step.name,
                    display(&snapshot_path(step.name))
                )),
                SnapshotResult::Mismatch { diff } => {
                    println!(
                        "\nsnapshot mismatch for step {} ({}):\n{diff}",
                        step.name,
                        display(&snapshot_path(step.name))
                    );
                    failures.push(format!("{}: report differs from its snapshot", step.name));
                }
            }
        }
        if written > 0 {
            progress(
                started.elapsed(),
                &format!("snapshots: wrote {written} in {}", display(&snapshot_dir())),
            );
        }
        if !failures.is_empty() {
            println!();
            for f in &failures {
                println!("FAILED {f}");
            }
            if failures.iter().any(|f| f.contains("snapshot")) {
                if crate::is_ci() {
                    println!(
                        "accept changed reports locally with `cargo xtask test-local --update-snapshots` and commit tests/snapshots/"
                    );
                } else {
                    println!(
                        "accept with `cargo xtask test-local --update-snapshots` or `cargo insta review` (the .snap.new files are written)"
                    );
                }
            }
            bail!(
                "test-local: {} of {} steps failed",
                failures.len(),
                scenario.steps.len()
            );
        }
        progress(
            started.elapsed(),
            &format!(
                "ok: {} steps {} ({} provider, {} runtime)",
                scenario.steps.len(),
                if written > 0 {
                    format!("passed, {written} snapshots written")
                } else {
                    "matched their snapshots".to_string()
                },
                scenario.provider,
                self.runtime.name()
            ),
        );
        Ok(())
    }
}

fn display(path: &Path) -> String {
    path.strip_prefix(crate::project_root())
        .unwrap_or(path)
        .display()
        .to_string()
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("      {l}\n")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_volatile_fields() {
        let report = json!({
            "status": "ok", "action": "apply", "database": "init_fn_test_ab12cd34",
            "migrations": [{"version": 1, "duration_ms": 12, "applied_at": "2026-01-01"},
                           {"version": 2, "duration_ms": null}],
            "server_version": "17.6", "duration_ms": 40
        });
        let r = redact(&report, "init_fn_test_ab12cd34", 5432);
        assert_eq!(r["database"], "documents_db");
        assert_eq!(r["duration_ms"], "[ms]");
        assert_eq!(r["server_version"], "[version]");
        assert_eq!(r["migrations"][0]["duration_ms"], "[ms]");
        assert_eq!(r["migrations"][0]["applied_at"], "[timestamp]");
        assert_eq!(r["migrations"][1]["duration_ms"], Value::Null);
        // Field order is kept (the contract's order).
        let keys: Vec<&String> = r.as_object().unwrap().keys().collect();
        assert_eq!(keys[0], "status");

        let error = json!({"errorType": "Auth", "errorMessage": "localhost:32806/init_fn_test_ab12cd34: failed"});
        assert_eq!(
            redact(&error, "init_fn_test_ab12cd34", 32806)["errorMessage"],
            "localhost:[port]/documents_db: failed"
        );
    }

    #[test]
    fn reads_insta_snapshot_bodies() {
        let file = "---\nsource: x\nexpression: y\n---\n{\n  \"a\": 1\n}\n";
        assert_eq!(snapshot_body(file), "{\n  \"a\": 1\n}");
    }

    #[test]
    fn summarizes_reports_and_errors() {
        let err = json!({"errorType": "Auth", "errorMessage": "password authentication failed"});
        assert_eq!(
            summarize(&err),
            "error Auth: password authentication failed"
        );
        let report = json!({"status": "ok", "action": "apply",
            "migrations": [{"version": 1, "name": "initial_schema", "state": "applied"}],
            "objects": [{"outcome": "created"}, {"outcome": "created"}],
            "tables": [{"name": "documents", "rows": 0}],
            "indexes": [{"present": true}], "server_version": "17.6"});
        assert_eq!(
            summarize(&report),
            "ok apply: migrations [0001 initial_schema applied]; objects: 2 created; \
             tables: documents (0 rows); indexes 1/1 present; server 17.6"
        );
    }
}
