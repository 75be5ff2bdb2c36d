//! What both benchmarks measure and print: a series of runs (wall time, peak RSS), one cold
//! bootstrap run that must report ok, and the table of medians.

use std::path::Path;
use std::time::Duration;

use anyhow::bail;
use serde_json::Value;

use crate::local::postgres::PgServer;
use crate::local::runtime_api::{FunctionSpec, LocalFunction, Outcome};
use crate::local::secrets_manager::SecretsManager;
use crate::test_local::{FUNCTION_NAME, SECRET_ID, function_env};

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

    /// Adds one run's wall time and peak RSS.
    pub fn push(&mut self, (wall, rss_kb): (Duration, u64)) {
        self.wall.push(wall);
        self.rss_kb.push(rss_kb);
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

/// How many times slower `a`'s median is than `b`'s.
pub fn ratio(a: &Series, b: &Series) -> f64 {
    ms(a.median()) / ms(b.median()).max(f64::EPSILON)
}

pub fn mib(kb: u64) -> f64 {
    kb as f64 / 1024.0
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Median wall time and peak RSS of each series, labels in a column `label_width` wide.
pub fn print_table(label_width: usize, series: &[&Series]) {
    println!(
        "{:<label_width$} {:>12} {:>10}",
        "", "median wall", "peak RSS"
    );
    for s in series {
        println!(
            "{:<label_width$} {:>9.1} ms {:>6.1} MiB",
            s.label,
            ms(s.median()),
            mib(s.peak_rss_kb())
        );
    }
}

/// One invocation of a fresh bootstrap process on `db`: its wall time and peak RSS. Unless the
/// report says ok, the log is printed and the error starts with `what`.
pub async fn cold_run(
    server: &PgServer,
    secrets: &SecretsManager,
    bootstrap: &Path,
    db: &str,
    event: Value,
    what: &str,
) -> anyhow::Result<(Duration, u64)> {
    let env = function_env(server, secrets, db, SECRET_ID);
    cold_run_with(bootstrap, env, event, what).await
}

/// [`cold_run`] with the function's variables given (e.g. `DB_AUTH=iam`).
pub async fn cold_run_with(
    bootstrap: &Path,
    env: Vec<(String, String)>,
    event: Value,
    what: &str,
) -> anyhow::Result<(Duration, u64)> {
    let mut spec = FunctionSpec::new(bootstrap, FUNCTION_NAME);
    spec.env = env;
    let mut function = LocalFunction::start(spec).await?;
    let inv = function.invoke(event).await?;
    function.shutdown().await;
    match &inv.outcome {
        Outcome::Response(v) if v["status"] == "ok" => Ok((inv.total, inv.max_rss_kb.unwrap_or(0))),
        other => {
            eprintln!("{}", inv.log);
            bail!("{what}: {other}")
        }
    }
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
