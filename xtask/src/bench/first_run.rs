//! `cargo xtask bench --first-run`: a newcomer's first `cargo xtask test-local`, replayed in a
//! temporary clone with an empty `CARGO_HOME` and an empty target dir. Its phases (download, xtask
//! compile, bootstrap compile, test) are timed from the run's own output, line by line; then the
//! warm loop (the same command again) and the edit loop (a migration touched: build.rs re-embeds
//! `sql/` and the bootstrap relinks), each the median of three runs.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, bail};
use xshell::{Shell, cmd};

/// Runs of the warm and the edit loop.
const LOOP_RUNS: usize = 3;
/// Longest quiet stretch before the bench says it is still waiting.
const HEARTBEAT: Duration = Duration::from_secs(10);

/// Where the time of a first run goes, in the order they happen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    XtaskDownload,
    XtaskCompile,
    BootstrapDownload,
    BootstrapCompile,
    Test,
}

impl Phase {
    /// The phase once `line` has been printed: cargo's `Compiling`/`Finished`/`Running` lines and
    /// test-local's `bootstrap:` line mark the boundaries.
    fn after(self, line: &str) -> Phase {
        let l = line.trim_start();
        let cargo_starts = l.starts_with("Compiling ") || l.starts_with("Finished ");
        match self {
            Phase::XtaskDownload if cargo_starts => Phase::XtaskCompile,
            Phase::XtaskCompile if l.starts_with("Running `") => Phase::BootstrapDownload,
            Phase::BootstrapDownload if cargo_starts => Phase::BootstrapCompile,
            Phase::BootstrapCompile if l.contains("] bootstrap: ") => Phase::Test,
            same => same,
        }
    }
}

/// What one command printed (each line with the time since it started), and what it cost.
struct Run {
    lines: Vec<(Duration, String)>,
    wall: Duration,
    /// User + system CPU time of the whole process tree, from `/usr/bin/time`.
    cpu: Option<Duration>,
}

/// A first run's phases: wall time, and the crates cargo compiled in each compile phase.
#[derive(Debug, Default, PartialEq)]
struct Phases {
    download: Duration,
    xtask_compile: Duration,
    bootstrap_compile: Duration,
    test: Duration,
    xtask_crates: Vec<String>,
    bootstrap_crates: Vec<String>,
}

fn phases(lines: &[(Duration, String)], wall: Duration) -> Phases {
    let mut p = Phases::default();
    let (mut phase, mut since) = (Phase::XtaskDownload, Duration::ZERO);
    let close = |p: &mut Phases, phase: Phase, span: Duration| match phase {
        Phase::XtaskDownload | Phase::BootstrapDownload => p.download += span,
        Phase::XtaskCompile => p.xtask_compile += span,
        Phase::BootstrapCompile => p.bootstrap_compile += span,
        Phase::Test => p.test += span,
    };
    for (at, line) in lines {
        let next = phase.after(line);
        if next != phase {
            close(&mut p, phase, at.saturating_sub(since));
            (phase, since) = (next, *at);
        }
        if let Some(krate) = line.trim_start().strip_prefix("Compiling ") {
            // `ring v0.17.14` (path crates add ` (/path)`): name and version identify the crate.
            let krate = krate.split(" (").next().unwrap_or(krate).to_string();
            match phase {
                Phase::XtaskCompile => p.xtask_crates.push(krate),
                Phase::BootstrapCompile => p.bootstrap_crates.push(krate),
                _ => {}
            }
        }
    }
    close(&mut p, phase, wall.saturating_sub(since));
    p
}

pub fn run(postgres: &str, rev: &str) -> anyhow::Result<()> {
    let sh = Shell::new()?;
    let root = crate::project_root();
    sh.change_dir(&root);
    let spec = format!("{rev}^{{commit}}");
    let commit = cmd!(sh, "git rev-parse --verify {spec}")
        .quiet()
        .read()
        .with_context(|| format!("bench --first-run: `{rev}` is not a commit here"))?;
    if rev == "HEAD"
        && !cmd!(sh, "git status --porcelain")
            .quiet()
            .read()?
            .is_empty()
    {
        eprintln!("bench --first-run: measuring HEAD; uncommitted changes are not in the clone");
    }
    let tmp = tempfile::Builder::new()
        .prefix("init-fn-first-run-")
        .tempdir()?;
    let clone = tmp.path().join("init-fn");
    let home = tmp.path().join("cargo-home");
    std::fs::create_dir_all(&home)?;
    cmd!(sh, "git clone --quiet {root} {clone}").run()?;
    cmd!(sh, "git -C {clone} checkout --quiet --detach {commit}").run()?;
    let load_before = load_average();
    eprintln!(
        "bench --first-run: {} in {}, CARGO_HOME and target dir empty; load average {load_before}",
        &commit[..12],
        clone.display()
    );

    let test_local = ["xtask", "test-local", "--postgres", postgres];
    let first = run_timed(&sh, &clone, &home, &test_local)?;
    let p = phases(&first.lines, first.wall);
    let mut warm = Vec::new();
    for i in 1..=LOOP_RUNS {
        eprintln!("bench --first-run: warm run {i}/{LOOP_RUNS}");
        warm.push(run_timed(&sh, &clone, &home, &test_local)?.wall);
    }
    let mut edit = Vec::new();
    for i in 1..=LOOP_RUNS {
        eprintln!(
            "bench --first-run: edit loop {i}/{LOOP_RUNS} (sql/0001_initial_schema.sql touched)"
        );
        touch(&clone.join("sql/0001_initial_schema.sql"))?;
        edit.push(run_timed(&sh, &clone, &home, &test_local)?.wall);
    }

    let twice = p
        .bootstrap_crates
        .iter()
        .filter(|c| p.xtask_crates.contains(c))
        .count();
    let secs = |d: Duration| format!("{:>7.1} s", d.as_secs_f64());
    println!(
        "bench --first-run: `cargo xtask test-local --postgres {postgres}` at {}, fresh clone, empty CARGO_HOME and target dir",
        &commit[..12]
    );
    println!(
        "machine: {} CPUs; load average {load_before} before, {} after (other work on the machine inflates every wall time)",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        load_average()
    );
    println!("{:<34} {:>9}", "phase", "wall");
    println!("{:<34} {}", "download (crates.io)", secs(p.download));
    println!(
        "{:<34} {}  {} crates",
        "xtask compile (dev profile)",
        secs(p.xtask_compile),
        p.xtask_crates.len()
    );
    println!(
        "{:<34} {}  {} crates, {twice} of them also in the xtask compile",
        "bootstrap compile (local profile)",
        secs(p.bootstrap_compile),
        p.bootstrap_crates.len()
    );
    println!("{:<34} {}", "test (scenario, snapshots)", secs(p.test));
    println!(
        "{:<34} {}  CPU user+sys {}",
        "total",
        secs(first.wall),
        first
            .cpu
            .map_or("?".to_string(), |c| secs(c).trim().to_string())
    );
    println!(
        "{:<34} {}  median of {LOOP_RUNS}: {}",
        "warm test-local",
        secs(median(&warm)),
        list(&warm)
    );
    println!(
        "{:<34} {}  median of {LOOP_RUNS}: {}",
        "edit loop (migration touched)",
        secs(median(&edit)),
        list(&edit)
    );
    Ok(())
}

/// `cargo <args>` in `dir` with `CARGO_HOME=home` and the target dir inside `dir`, under
/// `/usr/bin/time`; every line is echoed with its time, and a quiet stretch is announced.
fn run_timed(sh: &Shell, dir: &Path, home: &Path, args: &[&str]) -> anyhow::Result<Run> {
    let cargo = crate::cargo();
    let (cpu_file, format) = (home.join("cpu-time"), "%U %S");
    let cmd = crate::without_package_env(cmd!(
        sh,
        "/usr/bin/time -f {format} -o {cpu_file} {cargo} {args...}"
    ))
    .env("CARGO_HOME", home)
    .env_remove("CARGO_TARGET_DIR")
    // A compiler cache would make a first build look warm.
    .env_remove("RUSTC_WRAPPER");
    let mut command = Command::from(cmd);
    let mut child = command
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("bench --first-run: run /usr/bin/time cargo (Debian: time)")?;
    let started = Instant::now();
    let (tx, rx) = mpsc::channel();
    let readers = [
        forward(child.stdout.take(), tx.clone()),
        forward(child.stderr.take(), tx),
    ];
    let mut lines = Vec::new();
    loop {
        match rx.recv_timeout(HEARTBEAT) {
            Ok((at, line)) => {
                let at: Duration = at - started;
                eprintln!("  [{:>6.1}s] {line}", at.as_secs_f64());
                lines.push((at, line));
            }
            Err(mpsc::RecvTimeoutError::Timeout) => eprintln!(
                "  [{:>6.1}s] (still running: nothing printed for {} s)",
                started.elapsed().as_secs_f64(),
                HEARTBEAT.as_secs()
            ),
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    let status = child.wait()?;
    let wall = started.elapsed();
    for reader in readers {
        let _ = reader.join();
    }
    if !status.success() {
        bail!(
            "bench --first-run: `cargo {}` failed ({status}) in {}",
            args.join(" "),
            dir.display()
        );
    }
    let cpu = std::fs::read_to_string(&cpu_file).ok().and_then(|s| {
        let mut it = s.split_whitespace().map(|t| t.parse::<f64>().ok());
        Some(Duration::from_secs_f64(it.next()?? + it.next()??))
    });
    Ok(Run { lines, wall, cpu })
}

/// Sends each line of `stream` with the instant it arrived.
fn forward(
    stream: Option<impl Read + Send + 'static>,
    tx: mpsc::Sender<(Instant, String)>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let Some(stream) = stream else { return };
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            if tx.send((Instant::now(), line)).is_err() {
                return;
            }
        }
    })
}

/// A new modification time, content unchanged: cargo sees an edited migration.
fn touch(path: &Path) -> anyhow::Result<()> {
    std::fs::File::options()
        .append(true)
        .open(path)
        .and_then(|f| f.set_modified(SystemTime::now()))
        .with_context(|| format!("bench --first-run: touch {}", path.display()))
}

/// The 1-minute load average (`/proc/loadavg`), or `?`.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".to_string())
}

fn median(runs: &[Duration]) -> Duration {
    let mut sorted = runs.to_vec();
    sorted.sort();
    sorted.get(sorted.len() / 2).copied().unwrap_or_default()
}

fn list(runs: &[Duration]) -> String {
    runs.iter()
        .map(|d| format!("{:.1}", d.as_secs_f64()))
        .collect::<Vec<_>>()
        .join(", ")
        + " s"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_follow_cargo_and_test_local_lines() {
        let s = Duration::from_secs;
        let lines: Vec<(Duration, String)> = [
            (0, "    Updating crates.io index"),
            (2, "  Downloaded ring v0.17.14"),
            (5, "   Compiling ring v0.17.14"),
            (9, "   Compiling xtask v0.1.0 (/tmp/x/xtask)"),
            (
                50,
                "    Finished `dev` profile [unoptimized] target(s) in 45s",
            ),
            (50, "     Running `target/debug/xtask test-local`"),
            (51, "[  0.00s] build: host bootstrap, profile local"),
            (53, "  Downloaded openssl-sys v0.9.118"),
            (54, "   Compiling ring v0.17.14"),
            (55, "   Compiling init-fn v0.1.0 (/tmp/x/init-fn)"),
            (150, "[ 99.00s] bootstrap: target/local/init-fn"),
            (152, "[101.00s] ok: 6 steps matched their snapshots"),
        ]
        .into_iter()
        .map(|(t, l)| (s(t), l.to_string()))
        .collect();
        let p = phases(&lines, s(153));
        assert_eq!(p.download, s(5) + s(4));
        assert_eq!(p.xtask_compile, s(45));
        assert_eq!(p.bootstrap_compile, s(96));
        assert_eq!(p.test, s(3));
        assert_eq!(p.xtask_crates, ["ring v0.17.14", "xtask v0.1.0"]);
        assert_eq!(p.bootstrap_crates, ["ring v0.17.14", "init-fn v0.1.0"]);
    }

    #[test]
    fn a_built_xtask_has_no_compile_lines() {
        let lines = vec![
            (Duration::ZERO, "    Finished `dev` profile".to_string()),
            (
                Duration::ZERO,
                "     Running `target/debug/xtask`".to_string(),
            ),
            (
                Duration::from_secs(1),
                "    Finished `local` profile".to_string(),
            ),
            (Duration::from_secs(1), "[0.0s] bootstrap: x".to_string()),
        ];
        let p = phases(&lines, Duration::from_secs(3));
        assert!(p.xtask_crates.is_empty());
        assert_eq!(p.test, Duration::from_secs(2));
    }
}
