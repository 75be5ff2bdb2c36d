//! Production faults against real PostgreSQL: the invocation deadline (the real bootstrap under the
//! Runtime API emulator with a short function timeout), a SIGKILLed bootstrap, a terminated backend,
//! a table lock held by the application, and retried deadlocks. Each prints what it measured.

use std::time::{Duration, Instant, SystemTime};

use init_fn::InitError;
use serde_json::{Value, json};
use tests::harness::{self, DB, Harness, SECRET_ID, states, with_extra};
use xtask::local::runtime_api::{FunctionSpec, Invocation, LocalFunction, Outcome};
use xtask::test_local;

/// Tables, indexes and sequences 0001 creates (2 + 6 + 3 constraint indexes + 2).
const SCHEMA_RELATIONS: usize = 13;

/// Slows every DDL command (but the ledger's) by `seconds` with an event trigger.
async fn slow_every_ddl(client: &tokio_postgres::Client, seconds: f64) -> anyhow::Result<()> {
    client
        .batch_execute(&format!(
            "CREATE FUNCTION slow_ddl() RETURNS event_trigger LANGUAGE plpgsql AS $$
             BEGIN
               IF EXISTS (SELECT 1 FROM pg_event_trigger_ddl_commands()
                          WHERE object_identity NOT LIKE '%_init_fn_migrations%') THEN
                 PERFORM pg_sleep({seconds});
               END IF;
             END $$;
             CREATE EVENT TRIGGER slow_ddl ON ddl_command_end EXECUTE FUNCTION slow_ddl();"
        ))
        .await?;
    Ok(())
}

async fn unslow(client: &tokio_postgres::Client) -> anyhow::Result<()> {
    client
        .batch_execute("DROP EVENT TRIGGER slow_ddl; DROP FUNCTION slow_ddl();")
        .await?;
    Ok(())
}

/// Locks held by init-fn sessions (the advisory lock counts whoever holds it): none → released.
async fn init_fn_locks(client: &tokio_postgres::Client) -> anyhow::Result<i64> {
    Ok(client
        .query_one(
            "SELECT count(*) FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid \
             WHERE l.pid <> pg_backend_pid() AND l.granted \
               AND (l.locktype = 'advisory' OR (a.application_name = 'init-fn' AND l.locktype = 'relation'))",
            &[],
        )
        .await?
        .get(0))
}

/// Polls until no init-fn lock is left; how long that took (fails past `limit`).
async fn locks_released_within(
    client: &tokio_postgres::Client,
    since: Instant,
    limit: Duration,
) -> anyhow::Result<Duration> {
    loop {
        if init_fn_locks(client).await? == 0 {
            return Ok(since.elapsed());
        }
        anyhow::ensure!(
            since.elapsed() < limit,
            "init-fn locks still held {:?} later",
            since.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The pid of the init-fn backend once it sleeps inside a migration's DDL.
async fn backend_in_migration(client: &tokio_postgres::Client) -> anyhow::Result<i32> {
    let started = Instant::now();
    loop {
        let row = client
            .query_opt(
                "SELECT pid FROM pg_stat_activity WHERE application_name = 'init-fn' AND wait_event = 'PgSleep'",
                &[],
            )
            .await?;
        if let Some(row) = row {
            return Ok(row.get(0));
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(30),
            "init-fn never reached a migration"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The schema is either fully there or not at all, and the ledger agrees.
async fn assert_all_or_nothing(h: &Harness, expect_applied: bool) -> anyhow::Result<()> {
    let relations = h.relations(DB).await?;
    let ledger = h.ledger(DB).await?;
    if expect_applied {
        assert_eq!(relations.len(), SCHEMA_RELATIONS, "{relations:?}");
        assert_eq!(ledger, vec![(1, "initial_schema".to_string())]);
    } else {
        assert!(relations.is_empty(), "half-applied: {relations:?}");
        assert!(ledger.is_empty(), "{ledger:?}");
    }
    Ok(())
}

/// The real bootstrap (profile local), wired to `h`'s server and secret, with a function timeout.
async fn function(h: &Harness, timeout: Duration) -> anyhow::Result<LocalFunction> {
    let bootstrap = tokio::task::spawn_blocking(test_local::build_local_bootstrap).await??;
    let mut spec = FunctionSpec::new(bootstrap, test_local::FUNCTION_NAME);
    spec.timeout = timeout;
    spec.env = test_local::function_env(&h.pg, &h.secrets, DB, SECRET_ID);
    LocalFunction::start(spec).await
}

fn assert_no_password(h: &Harness, text: &str) {
    assert!(!text.contains(h.pg.password()), "password leaked: {text}");
}

fn function_error(inv: &Invocation) -> (String, String) {
    match &inv.outcome {
        Outcome::FunctionError {
            error_type,
            error_message,
        } => (error_type.clone(), error_message.clone()),
        other => panic!("expected a function error, got {other:?}\n{}", inv.log),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deadline_cancels_the_migration_and_answers_before_the_runtime_timeout()
-> anyhow::Result<()> {
    let h = Harness::from_env().await?;
    let observer = h.client(DB).await?;
    // 0001 has 8 statements: 8 s of DDL against a 6 s function timeout (3 s margin).
    slow_every_ddl(&observer, 1.0).await?;
    let timeout = Duration::from_secs(6);
    let mut f = function(&h, timeout).await?;

    let inv = f.invoke(json!({})).await?;
    let answered = Instant::now();
    let (kind, message) = function_error(&inv);
    assert_eq!(kind, "Timeout", "{message}\n{}", inv.log);
    assert!(
        message.contains("migration 1 (initial_schema)")
            && message.contains("nothing of it was applied"),
        "{message}"
    );
    assert!(inv.duration < timeout, "answered after {:?}", inv.duration);
    let released = locks_released_within(&observer, answered, Duration::from_secs(2)).await?;
    println!(
        "measured: Timeout answered {:.0} ms after the event, {:.0} ms before the {} s runtime deadline; init-fn locks gone {:.0} ms after the answer",
        inv.duration.as_secs_f64() * 1000.0,
        (timeout - inv.duration).as_secs_f64() * 1000.0,
        timeout.as_secs(),
        released.as_secs_f64() * 1000.0
    );
    assert_all_or_nothing(&h, false).await?;
    assert_no_password(&h, &inv.log);
    assert_no_password(&h, &message);

    // The same warm process completes the schema once the DDL is fast again.
    unslow(&observer).await?;
    let next = f.invoke(json!({})).await?;
    let Outcome::Response(report) = &next.outcome else {
        panic!("{:?}\n{}", next.outcome, next.log)
    };
    assert_eq!(states(report), ["applied"]);
    assert_all_or_nothing(&h, true).await?;
    f.shutdown().await;
    Ok(())
}

/// The bootstrap process of this test (a child running `bootstrap`).
fn child_running(bootstrap: &std::path::Path) -> Option<u32> {
    let me = std::process::id();
    let wanted = std::fs::canonicalize(bootstrap).ok()?;
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // "pid (comm) state ppid …"; comm may hold spaces, so split after its closing parenthesis.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if ppid == Some(me)
            && std::fs::read_link(format!("/proc/{pid}/exe")).ok() == Some(wanted.clone())
        {
            return Some(pid);
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_bootstrap_leaves_no_lock_behind() -> anyhow::Result<()> {
    let h = Harness::from_env().await?;
    let observer = h.client(DB).await?;
    // Without client_connection_check_interval the server would sleep on for 8 × 3 s.
    slow_every_ddl(&observer, 3.0).await?;
    let mut f = function(&h, Duration::from_secs(60)).await?;
    let bootstrap = f.spec().bootstrap.clone();
    let run = tokio::spawn(async move { f.invoke(json!({})).await });

    let backend = backend_in_migration(&observer).await?;
    assert!(
        init_fn_locks(&observer).await? > 0,
        "the migration holds locks"
    );
    let pid = child_running(&bootstrap).expect("the bootstrap is a child of this test");
    let status = std::process::Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()?;
    assert!(status.success());
    let killed = Instant::now();
    let released = locks_released_within(&observer, killed, Duration::from_secs(2)).await?;
    println!(
        "measured: after SIGKILL of the bootstrap (pid {pid}, backend {backend}) its locks were released in {:.0} ms",
        released.as_secs_f64() * 1000.0
    );
    let inv = run.await??;
    assert!(
        matches!(inv.outcome, Outcome::Crash { .. }),
        "{:?}",
        inv.outcome
    );
    assert_no_password(&h, &inv.log);
    assert_all_or_nothing(&h, false).await?;

    unslow(&observer).await?;
    h.invoke(&[], json!({})).await?;
    assert_all_or_nothing(&h, true).await
}

#[tokio::test]
async fn a_terminated_backend_is_connect_and_the_next_run_completes() -> anyhow::Result<()> {
    let h = Harness::from_env().await?;
    let observer = h.client(DB).await?;
    slow_every_ddl(&observer, 0.5).await?;
    let terminate = async {
        let backend = backend_in_migration(&observer).await?;
        observer
            .execute("SELECT pg_terminate_backend($1)", &[&backend])
            .await?;
        anyhow::Ok(())
    };
    let (result, terminated) = tokio::join!(h.invoke(&[], json!({})), terminate);
    terminated?;
    let err = result.expect_err("a terminated session cannot finish the migration");
    assert_eq!(err.error_type(), "Connect", "{err}");
    assert!(err.retryable());
    let message = err.one_line();
    assert!(
        message.contains("migration 1 (initial_schema)") && message.contains("57P01"),
        "{message}"
    );
    assert_no_password(&h, &format!("{message} {err:?}"));
    assert_all_or_nothing(&h, false).await?;

    unslow(&observer).await?;
    let report = h.invoke(&[], json!({})).await?;
    assert_eq!(states(&report), ["applied"]);
    assert_all_or_nothing(&h, true).await
}

#[tokio::test]
async fn a_table_locked_by_the_application_is_lock_timeout_and_never_stalls_it()
-> anyhow::Result<()> {
    let h = Harness::from_env().await?;
    h.invoke(&[], json!({})).await?;
    let add_column = with_extra(&[(
        2,
        "add_note",
        "ALTER TABLE documents ADD COLUMN note text;\n",
    )]);

    // The application: a transaction that read `documents` and stays open, and a reader polling it.
    let holder = h.client(DB).await?;
    holder
        .batch_execute(
            "SET application_name = 'documents-app'; BEGIN; \
             SELECT count(*) AS holder_query_marker FROM documents;",
        )
        .await?;
    let holder_pid: i32 = holder
        .query_one("SELECT pg_backend_pid()", &[])
        .await?
        .get(0);
    let reader = h.client(DB).await?;
    let stop = tokio::sync::watch::channel(false);
    let reads = async {
        let mut longest = Duration::ZERO;
        let mut count = 0;
        while !*stop.1.borrow() {
            let started = Instant::now();
            reader
                .query_one("SELECT count(*) FROM documents", &[])
                .await?;
            longest = longest.max(started.elapsed());
            count += 1;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        anyhow::Ok((longest, count))
    };
    let migrate = async {
        let started = Instant::now();
        let result = harness::invoke(
            &h.state(&[("DB_DDL_LOCK_TIMEOUT_S", "1")], add_column.clone()),
            json!({}),
        )
        .await;
        let _ = stop.0.send(true);
        (result, started.elapsed())
    };
    let ((result, took), reads) = tokio::join!(migrate, reads);
    let (longest, count) = reads?;

    let err = result.expect_err("the table stays locked");
    assert_eq!(err.error_type(), "LockTimeout", "{err}");
    let message = err.one_line();
    for needle in [
        "migration 2 (add_note)",
        "table documents",
        &format!("pid {holder_pid}"),
        "\"documents-app\"",
        "idle in transaction",
        "DB_DDL_LOCK_TIMEOUT_S",
        &format!("{} attempts", init_fn::engine::apply::MAX_ATTEMPTS),
        "nothing of it was applied",
    ] {
        assert!(message.contains(needle), "{needle:?} missing: {message}");
    }
    assert!(!message.contains("holder_query_marker"), "{message}");
    assert_no_password(&h, &message);
    println!(
        "measured: LockTimeout after {:.1} s; longest application SELECT on documents: {:.0} ms over {count} reads (DB_DDL_LOCK_TIMEOUT_S=1)",
        took.as_secs_f64(),
        longest.as_secs_f64() * 1000.0
    );
    assert!(
        longest < Duration::from_millis(1800),
        "an application read waited {longest:?} behind the migration"
    );
    assert!(count > 10, "{count} reads");
    assert_eq!(h.ledger(DB).await?.len(), 1);

    holder.batch_execute("COMMIT").await?;
    let report = harness::invoke(&h.state(&[], add_column), json!({})).await?;
    assert_eq!(states(&report), ["already_applied", "applied"]);
    Ok(())
}

#[tokio::test]
async fn deadlocks_and_serialization_failures_are_retried_in_the_run() -> anyhow::Result<()> {
    let h = Harness::from_env().await?;
    h.client(DB)
        .await?
        .batch_execute("CREATE SEQUENCE public.attempts")
        .await?;
    // Sequences do not roll back: they count the attempts across the rollbacks.
    let flaky = |fail_below: i64, code: &str| {
        format!(
            "CREATE TABLE after_retry (id int);\n\
             DO $$ BEGIN IF nextval('public.attempts') < {fail_below} THEN \
               RAISE EXCEPTION 'simulated' USING ERRCODE = '{code}'; END IF; END $$;\n"
        )
    };
    let report = harness::invoke(
        &h.state(&[], with_extra(&[(2, "flaky", &flaky(3, "40P01"))])),
        json!({}),
    )
    .await?;
    assert_eq!(states(&report), ["applied", "applied"]);
    let attempts: i64 = h
        .client(DB)
        .await?
        .query_one("SELECT last_value FROM public.attempts", &[])
        .await?
        .get(0);
    assert_eq!(attempts, 3, "two rolled-back attempts, then success");

    // A failure that never clears ends as MigrationFailed after the attempts, nothing left behind.
    let err = harness::invoke(
        &h.state(
            &[],
            with_extra(&[
                (2, "flaky", &flaky(3, "40P01")),
                (
                    3,
                    "stuck",
                    &flaky(1_000, "40001").replace("after_retry", "stuck"),
                ),
            ]),
        ),
        json!({}),
    )
    .await
    .unwrap_err();
    assert_eq!(err.error_type(), "MigrationFailed", "{err}");
    assert!(err.one_line().contains("SQLSTATE 40001"), "{err}");
    assert!(!h.relations(DB).await?.contains(&"stuck".to_string()));
    Ok(())
}

#[tokio::test]
async fn a_no_transaction_migration_out_of_time_says_which_statements_completed()
-> anyhow::Result<()> {
    let h = Harness::from_env().await?;
    h.invoke(&[], json!({})).await?;
    let observer = h.client(DB).await?;
    slow_every_ddl(&observer, 1.5).await?;
    let three = with_extra(&[(
        2,
        "three_tables",
        "-- init-fn: no-transaction\n\
         CREATE TABLE IF NOT EXISTS t_a (id int);\n\
         CREATE TABLE IF NOT EXISTS t_b (id int);\n\
         CREATE TABLE IF NOT EXISTS t_c (id int);\n",
    )]);
    let state = h.state(&[("DB_DEADLINE_MARGIN_S", "1")], three.clone());
    // 2.5 s to work: the first table (1.5 s) completes, the second is cancelled in its sleep.
    let deadline = SystemTime::now() + Duration::from_millis(3500);
    let started = Instant::now();
    let err = init_fn::handle(&state, json!({}), "t", Some(deadline))
        .await
        .unwrap_err();
    let took = started.elapsed();
    assert_eq!(err.error_type(), "Timeout", "{err}");
    let message = err.one_line();
    assert!(
        message.contains("migration 2 (three_tables)")
            && message.contains("statements 1-1 of 3 completed")
            && message.contains("at statement 2 of 3"),
        "{message}"
    );
    assert!(
        took < Duration::from_millis(3500),
        "answered after {took:?}"
    );
    assert_eq!(init_fn_locks(&observer).await?, 0);
    assert_eq!(h.ledger(DB).await?.len(), 1, "not recorded");
    let relations = h.relations(DB).await?;
    assert!(relations.contains(&"t_a".to_string()), "{relations:?}");
    assert!(!relations.contains(&"t_b".to_string()), "{relations:?}");

    unslow(&observer).await?;
    let report: Value = harness::invoke(&h.state(&[], three), json!({})).await?;
    assert_eq!(states(&report), ["already_applied", "applied"]);
    let relations = h.relations(DB).await?;
    for table in ["t_a", "t_b", "t_c"] {
        assert!(relations.contains(&table.to_string()), "{relations:?}");
    }
    Ok(())
}

#[tokio::test]
async fn time_running_out_outside_a_migration_is_timeout_too() -> anyhow::Result<()> {
    let h = Harness::from_env().await?;
    // Less time left than the margin: no wait for the migration lock at all, nothing touched.
    let state = h.state(&[], init_fn::engine::run::embedded());
    let soon = SystemTime::now() + Duration::from_secs(2);
    let err = init_fn::handle(&state, json!({}), "t", Some(soon))
        .await
        .unwrap_err();
    assert_eq!(err.error_type(), "Timeout", "{err}");
    assert!(err.one_line().contains("migration lock"), "{err}");
    assert!(h.ledger(DB).await?.is_empty());

    // A host that accepts TCP but never answers, with a connect timeout longer than the time left:
    // the run is stopped before the deadline instead of waiting DB_CONNECT_TIMEOUT_S.
    let silent = std::net::TcpListener::bind("127.0.0.1:0")?;
    let port = silent.local_addr()?.port().to_string();
    let state = h.state(
        &[
            ("DB_HOST", "127.0.0.1"),
            ("DB_PORT", &port),
            ("DB_CONNECT_TIMEOUT_S", "30"),
            ("DB_DEADLINE_MARGIN_S", "1"),
        ],
        init_fn::engine::run::embedded(),
    );
    let started = Instant::now();
    let deadline = SystemTime::now() + Duration::from_secs(2);
    let err = init_fn::handle(&state, json!({}), "t", Some(deadline))
        .await
        .unwrap_err();
    assert_eq!(err.error_type(), "Timeout", "{err}");
    assert!(
        started.elapsed() < Duration::from_millis(1900),
        "{:?}",
        started.elapsed()
    );
    assert_no_password(&h, &format!("{err} {err:?}"));
    Ok(())
}

#[test]
fn retry_classes_match_the_readme() {
    let retry = |e: InitError| e.retryable();
    let s = || String::new();
    assert!(retry(InitError::Connect(s())));
    assert!(retry(InitError::LockTimeout(s())));
    assert!(retry(InitError::Timeout(s())));
    assert!(retry(InitError::SecretFetch(s())));
    for fix_first in [
        InitError::Config(s()),
        InitError::InvalidEvent(s()),
        InitError::SecretFormat(s()),
        InitError::Tls(s()),
        InitError::Auth(s()),
        InitError::ChecksumMismatch(s()),
        InitError::Verify(s()),
    ] {
        assert!(!fix_first.retryable(), "{}", fix_first.error_type());
    }
    // This checkout's function README (not `xtask::project_root`, baked in when xtask compiles):
    // its error table has one row per errorType, with "retry?" as the code classes it.
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../init-fn/README.md"))
            .unwrap();
    let mut table: Vec<(String, String)> = readme
        .lines()
        .skip_while(|l| !l.starts_with("| errorType | retry? |"))
        .skip(2)
        .take_while(|l| l.starts_with('|'))
        .map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            (cells[1].trim_matches('`').to_string(), cells[2].to_string())
        })
        .collect();
    let every = [
        InitError::Config(s()),
        InitError::InvalidEvent(s()),
        InitError::SecretFetch(s()),
        InitError::SecretFormat(s()),
        InitError::Connect(s()),
        InitError::Tls(s()),
        InitError::Auth(s()),
        InitError::LockTimeout(s()),
        InitError::ChecksumMismatch(s()),
        InitError::MigrationFailed {
            version: 2,
            name: s(),
            sqlstate: s(),
            message: s(),
        },
        InitError::Verify(s()),
        InitError::Timeout(s()),
    ];
    let mut code: Vec<(String, String)> = every
        .iter()
        .map(|e| {
            let answer = if e.retryable() { "yes" } else { "no" };
            (e.error_type().to_string(), answer.to_string())
        })
        .collect();
    table.sort();
    code.sort();
    assert_eq!(table, code, "init-fn/README.md's error table vs InitError");
}
