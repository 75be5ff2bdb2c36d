//! `cargo xtask bench`: cold bootstrap spawn → report on a fresh and on an up-to-date database,
//! side by side with `psql -f` of the same DDL (the floor), all over TLS (`verify-full`) on one
//! local server. Median wall time and peak RSS, and the ratio to the floor. `--scale` is the
//! growth benchmark (`scale`), `--history` a real migration history against `psql -f` per file
//! (`history`), `--auth iam` the function's IAM login against its password login (`iam`); they
//! measure and print through `series`.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::json;

mod first_run;
mod history;
mod iam;
mod scale;
mod series;

use crate::local::postgres::{DEFAULT_IMAGE, PgChoice, PgServer};
use crate::local::secrets_manager::SecretsManager;
use crate::test_local::SECRET_ID;
use series::{Series, cold_run, mib, print_table, ratio};

/// The DDL psql runs as the floor: the first migration, byte for byte what the bootstrap embeds.
const DDL: &str = "sql/0001_initial_schema.sql";

/// Measure a cold bootstrap spawn → report against `psql -f` of the same DDL over TLS
#[derive(clap::Args)]
pub struct Bench {
    /// Postgres to run against: auto, docker, local, or a postgres:// URL
    #[arg(long, default_value = "auto")]
    postgres: String,
    /// Image for `--postgres docker`
    #[arg(long, default_value = DEFAULT_IMAGE)]
    image: String,
    /// Runs per measurement (the median is reported)
    #[arg(long, default_value_t = 7)]
    runs: usize,
    /// Use the existing bootstrap instead of building it
    #[arg(long)]
    no_build: bool,
    /// Which bootstrap the cold-start benchmarks run: `lambda`, the one `cargo xtask build` ships for
    /// this machine's architecture (OpenSSL 3 built from source, linked statically); `host`, the
    /// native release build (`target/release/init-fn`, the system's libssl)
    #[arg(long, value_enum, default_value = "lambda")]
    bootstrap: BenchBootstrap,
    /// Growth instead: an up-to-date apply on an empty `documents` vs one holding `--rows` rows, and
    /// with 1 vs 100 applied migrations (both bootstraps built with `[profile.local]`)
    #[arg(long)]
    scale: bool,
    /// A real history instead: `tests/fixtures/histories/PROJECT` (default the largest) applied by a
    /// cold bootstrap that embeds it vs `psql -f` of each file in its own session, and the ratio
    #[arg(long, value_name = "PROJECT", num_args = 0..=1, default_missing_value = "")]
    history: Option<String>,
    /// Rows generated into `documents` for `--scale`
    #[arg(long, default_value_t = 3_000_000)]
    rows: i64,
    /// A newcomer's first `cargo xtask test-local` at REV (default HEAD) in a temporary clone with an
    /// empty CARGO_HOME and target dir: download, xtask compile, bootstrap compile and test phases,
    /// then the warm and edit loops
    #[arg(long, value_name = "REV", num_args = 0..=1, default_missing_value = "HEAD")]
    first_run: Option<String>,
    /// `iam`: a cold apply with `DB_AUTH=iam` vs `DB_AUTH=secret` on a local server that checks
    /// IAM tokens (PAM; root), beside `psql` logging in with the password and with a token
    #[arg(long, value_enum, default_value = "secret")]
    auth: BenchAuth,
}

/// The bootstrap a cold-start benchmark runs (`--bootstrap`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum BenchBootstrap {
    /// The Lambda build for this machine's architecture, as shipped
    Lambda,
    /// The native release build, linked to the system's libssl
    Host,
}

/// Which login the default bench measures (`--auth`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum BenchAuth {
    /// The password from Secrets Manager (the function's default)
    Secret,
    /// Both modes side by side on a token-checking server, with the psql login floors
    Iam,
}

/// The four series of one benchmark run.
struct Results {
    pub fresh: Series,
    pub current: Series,
    pub psql_fresh: Series,
    pub psql_current: Series,
}

impl Bench {
    pub fn run(self, _sh: &xshell::Shell) -> anyhow::Result<()> {
        anyhow::ensure!(self.runs > 0, "bench: --runs must be at least 1");
        let choice: PgChoice = self.postgres.parse()?;
        let choice = choice.with_image(&self.image);
        if let Some(rev) = &self.first_run {
            return first_run::run(&self.postgres, rev);
        }
        if self.auth == BenchAuth::Iam {
            iam::check(&choice)?;
            return iam::run(self.runs, &self.release_bootstrap()?);
        }
        crate::local::postgres::hand_over_if_docker(&choice)?;
        if let Some(project) = &self.history {
            let project = Some(project.as_str()).filter(|p| !p.is_empty());
            return history::run(&choice, self.runs, project);
        }
        if self.scale {
            anyhow::ensure!(self.rows > 0, "bench: --rows must be at least 1");
            return scale::run(&choice, self.runs, self.rows);
        }
        let bootstrap = self.release_bootstrap()?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        let runs = self.runs;
        runtime.block_on(async move {
            let server = PgServer::start(&choice).await?;
            let version = server.server_version().await.unwrap_or_default();
            println!(
                "bench: {runs} runs each, {} PostgreSQL {version}, sslmode={}, bootstrap {}",
                server.kind(),
                server.sslmode(),
                crate::relative(&bootstrap)
            );
            let results = measure(&server, &bootstrap, runs).await;
            server.stop().await?;
            print_results(&results?);
            Ok(())
        })
    }
}

impl Bench {
    /// The `--bootstrap` to run, built unless `--no-build`: the shipped Lambda build for this
    /// machine's architecture (`target/lambda/init-fn/<arch>/bootstrap`) or `target/release/init-fn`.
    fn release_bootstrap(&self) -> anyhow::Result<std::path::PathBuf> {
        match self.bootstrap {
            BenchBootstrap::Host if self.no_build => {
                Ok(crate::build::target_dir().join("release/init-fn"))
            }
            BenchBootstrap::Host => crate::test_local::build_release_bootstrap(),
            BenchBootstrap::Lambda => {
                let arch = match std::env::consts::ARCH {
                    "x86_64" => crate::build::Arch::X86_64,
                    "aarch64" => crate::build::Arch::Arm64,
                    other => anyhow::bail!(
                        "bench: no Lambda architecture runs natively on {other}; use --bootstrap host"
                    ),
                };
                let path = crate::build::lambda_dir(arch).join("bootstrap");
                if self.no_build {
                    anyhow::ensure!(
                        path.exists(),
                        "bench --no-build: {} is missing; run `cargo xtask build --arch {arch}` or drop --no-build",
                        crate::relative(&path)
                    );
                    return Ok(path);
                }
                eprintln!(
                    "bench: building the shipped {arch} bootstrap (cargo xtask build --arch {arch})"
                );
                crate::build::bootstrap(&xshell::Shell::new()?, arch)
            }
        }
    }
}

/// Run every series `runs` times, interleaved so drift affects all alike.
async fn measure(server: &PgServer, bootstrap: &Path, runs: usize) -> anyhow::Result<Results> {
    let secrets = SecretsManager::start().await?;
    secrets.put(SECRET_ID, server.password());
    let ddl = crate::project_root().join(DDL);
    let mut results = Results {
        fresh: Series::new("init-fn apply, fresh db"),
        current: Series::new("init-fn apply, up-to-date db"),
        psql_fresh: Series::new("psql -f 0001, fresh db"),
        psql_current: Series::new("psql -f 0001, up-to-date db"),
    };
    for i in 0..runs {
        let db = format!("bench_fn_{i}");
        server.create_database(&db).await?;
        for series in [&mut results.fresh, &mut results.current] {
            let apply = json!({"action": "apply"});
            let what = format!("bench: {} failed", series.label);
            series.push(cold_run(server, &secrets, bootstrap, &db, apply, &what).await?);
        }

        let db = format!("bench_psql_{i}");
        server.create_database(&db).await?;
        for series in [&mut results.psql_fresh, &mut results.psql_current] {
            series.push(psql_file(server, &db, &ddl).await?);
        }
    }
    Ok(results)
}

/// `psql -f` over TLS with `verify-full`, under `/usr/bin/time` for its peak RSS.
async fn psql_file(server: &PgServer, db: &str, file: &Path) -> anyhow::Result<(Duration, u64)> {
    let args = [
        "-v".as_ref(),
        "ON_ERROR_STOP=1".as_ref(),
        "-f".as_ref(),
        file.as_os_str(),
    ];
    psql(server, server.user(), server.password(), db, &args).await
}

/// `psql -X -q` as `user` on `db` over the server's TLS (`verify-full`) with `password` in
/// `PGPASSWORD`, under `/usr/bin/time` for its peak RSS: its wall time and peak RSS.
async fn psql(
    server: &PgServer,
    user: &str,
    password: &str,
    db: &str,
    args: &[&std::ffi::OsStr],
) -> anyhow::Result<(Duration, u64)> {
    let mut conninfo = format!(
        "host={} port={} user={user} dbname={db} sslmode={}",
        server.host(),
        server.port(),
        server.sslmode()
    );
    if let Some(ca) = server.ca_bundle_path() {
        conninfo.push_str(&format!(" sslrootcert={}", ca.display()));
    }
    let started = Instant::now();
    let out = tokio::process::Command::new("/usr/bin/time")
        .args([
            "-f",
            "INIT_FN_BENCH_MAXRSS_KB=%M",
            "psql",
            "-X",
            "-q",
            "-d",
            &conninfo,
        ])
        .args(args)
        .env("PGPASSWORD", password)
        .stdin(Stdio::null())
        .output()
        .await
        .context("bench: run /usr/bin/time psql (Debian: time, postgresql-client)")?;
    let wall = started.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        bail!(
            "bench: psql as {user} failed ({}): {}",
            out.status,
            stderr.trim()
        );
    }
    let rss = stderr
        .lines()
        .find_map(|l| l.trim().strip_prefix("INIT_FN_BENCH_MAXRSS_KB="))
        .and_then(|v| v.trim().parse().ok())
        .context("bench: no peak RSS from /usr/bin/time")?;
    Ok((wall, rss))
}

/// The table and the ratios against the floor.
fn print_results(r: &Results) {
    print_table(32, &[&r.fresh, &r.current, &r.psql_fresh, &r.psql_current]);
    println!(
        "ratio to the psql floor: fresh {:.2}x, up-to-date {:.2}x (goal <= 1.3x); \
         bootstrap peak RSS {:.1} MiB (goal <= 16 MiB)",
        ratio(&r.fresh, &r.psql_fresh),
        ratio(&r.current, &r.psql_current),
        mib(r.fresh.peak_rss_kb().max(r.current.peak_rss_kb())),
    );
}
