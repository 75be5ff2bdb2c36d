//! `cargo xtask bench`: cold bootstrap spawn → report on a fresh and on an up-to-date database,
//! side by side with `psql -f` of the same DDL (the floor), all over TLS (`verify-full`) on one
//! local server. Median wall time and peak RSS, and the ratio to the floor.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::json;

use crate::local::postgres::{DEFAULT_IMAGE, PgChoice, PgServer};
use crate::local::runtime_api::{FunctionSpec, LocalFunction, Outcome};
use crate::local::secrets_manager::SecretsManager;
use crate::test_local::{FUNCTION_NAME, SECRET_ID, function_env};

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
    /// Use the existing release bootstrap instead of building it
    #[arg(long)]
    no_build: bool,
    /// Growth instead: an up-to-date apply on an empty `documents` vs one holding `--rows` rows, and
    /// with 1 vs 100 applied migrations (both bootstraps built with `[profile.local]`)
    #[arg(long)]
    scale: bool,
    /// Rows generated into `documents` for `--scale`
    #[arg(long, default_value_t = 3_000_000)]
    rows: i64,
    /// A newcomer's first `cargo xtask test-local` at REV (default HEAD) in a temporary clone with an
    /// empty CARGO_HOME and target dir: download, xtask compile, bootstrap compile and test phases,
    /// then the warm and edit loops
    #[arg(long, value_name = "REV", num_args = 0..=1, default_missing_value = "HEAD")]
    first_run: Option<String>,
}

/// One measured thing: wall times and peak RSS per run.
#[derive(Default)]
pub struct Series {
    pub label: &'static str,
    pub wall: Vec<Duration>,
    pub rss_kb: Vec<u64>,
}

impl Series {
    pub fn new(label: &'static str) -> Series {
        Series {
            label,
            ..Series::default()
        }
    }

    pub fn median(&self) -> Duration {
        let mut w = self.wall.clone();
        w.sort();
        w.get(w.len() / 2).copied().unwrap_or_default()
    }

    pub fn peak_rss_kb(&self) -> u64 {
        self.rss_kb.iter().copied().max().unwrap_or(0)
    }
}

/// The four series of one benchmark run.
pub struct Results {
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
            return crate::bench_first_run::run(&self.postgres, rev);
        }
        if self.scale {
            anyhow::ensure!(self.rows > 0, "bench: --rows must be at least 1");
            return crate::bench_scale::run(&choice, self.runs, self.rows);
        }
        let bootstrap = if self.no_build {
            crate::build::target_dir().join("release/init-fn")
        } else {
            crate::test_local::build_release_bootstrap()?
        };
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

/// Run every series `runs` times, interleaved so drift affects all alike.
pub async fn measure(server: &PgServer, bootstrap: &Path, runs: usize) -> anyhow::Result<Results> {
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
            let mut spec = FunctionSpec::new(bootstrap, FUNCTION_NAME);
            spec.env = function_env(server, &secrets, &db, SECRET_ID);
            let mut function = LocalFunction::start(spec).await?;
            let inv = function.invoke(json!({"action": "apply"})).await?;
            function.shutdown().await;
            if !matches!(&inv.outcome, Outcome::Response(v) if v["status"] == "ok") {
                eprintln!("{}", inv.log);
                bail!("bench: {} failed: {}", series.label, inv.outcome);
            }
            series.wall.push(inv.total);
            series.rss_kb.push(inv.max_rss_kb.unwrap_or(0));
        }

        let db = format!("bench_psql_{i}");
        server.create_database(&db).await?;
        for series in [&mut results.psql_fresh, &mut results.psql_current] {
            let (wall, rss) = psql_file(server, &db, &ddl).await?;
            series.wall.push(wall);
            series.rss_kb.push(rss);
        }
    }
    Ok(results)
}

/// `psql -f` over TLS with `verify-full`, under `/usr/bin/time` for its peak RSS.
async fn psql_file(server: &PgServer, db: &str, file: &Path) -> anyhow::Result<(Duration, u64)> {
    let mut conninfo = format!(
        "host={} port={} user={} dbname={db} sslmode={}",
        server.host(),
        server.port(),
        server.user(),
        server.sslmode()
    );
    if let Some(ca) = server.ca_bundle_path() {
        conninfo.push_str(&format!(" sslrootcert={}", ca.display()));
    }
    let started = Instant::now();
    let out = tokio::process::Command::new("/usr/bin/time")
        .args(["-f", "INIT_FN_BENCH_MAXRSS_KB=%M", "psql", "-X", "-q"])
        .args(["-v", "ON_ERROR_STOP=1", "-d", &conninfo, "-f"])
        .arg(file)
        .env("PGPASSWORD", server.password())
        .stdin(Stdio::null())
        .output()
        .await
        .context("bench: run /usr/bin/time psql (Debian: time, postgresql-client)")?;
    let wall = started.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        bail!("bench: psql -f failed ({}): {}", out.status, stderr.trim());
    }
    let rss = stderr
        .lines()
        .find_map(|l| l.trim().strip_prefix("INIT_FN_BENCH_MAXRSS_KB="))
        .and_then(|v| v.trim().parse().ok())
        .context("bench: no peak RSS from /usr/bin/time")?;
    Ok((wall, rss))
}

pub fn mib(kb: u64) -> f64 {
    kb as f64 / 1024.0
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The table and the ratios against the floor.
pub fn print_results(r: &Results) {
    println!("{:<32} {:>12} {:>10}", "", "median wall", "peak RSS");
    for s in [&r.fresh, &r.current, &r.psql_fresh, &r.psql_current] {
        println!(
            "{:<32} {:>9.1} ms {:>6.1} MiB",
            s.label,
            ms(s.median()),
            mib(s.peak_rss_kb())
        );
    }
    let ratio = |a: &Series, b: &Series| ms(a.median()) / ms(b.median()).max(f64::EPSILON);
    println!(
        "ratio to the psql floor: fresh {:.2}x, up-to-date {:.2}x (goal <= 1.3x); \
         bootstrap peak RSS {:.1} MiB (goal <= 16 MiB)",
        ratio(&r.fresh, &r.psql_fresh),
        ratio(&r.current, &r.psql_current),
        mib(r.fresh.peak_rss_kb().max(r.current.peak_rss_kb())),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_peak() {
        let s = Series {
            label: "x",
            wall: [30, 10, 20].map(Duration::from_millis).to_vec(),
            rss_kb: vec![5, 9, 7],
        };
        assert_eq!(s.median(), Duration::from_millis(20));
        assert_eq!(s.peak_rss_kb(), 9);
    }
}
