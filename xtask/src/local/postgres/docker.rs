//! What every build of the xtask knows about the Docker provider: the image, the label, the probe, and
//! how the plain `xtask` (without the `docker` feature, so without testcontainers to compile) hands a
//! command that needs Docker to the `xtask-docker` binary, built on first use. The provider itself is
//! `container.rs`, compiled only with the feature.

use std::time::Duration;

use anyhow::bail;

use super::{PgChoice, docker_answers};

/// The image `docker` uses unless `--image` says otherwise.
pub const DEFAULT_IMAGE: &str = "postgres:17";
/// How long the engine may take to answer before Docker counts as "not answering".
pub const DOCKER_PROBE_TIMEOUT: Duration = Duration::from_secs(5);
/// Label on every container this provider starts (`docker ps --filter label=init-fn-local=postgres`).
pub const LABEL_KEY: &str = "init-fn-local";
pub const LABEL_VALUE: &str = "postgres";

/// `postgres:17` → (`postgres`, `17`); `registry:5000/pg:17` → (`registry:5000/pg`, `17`).
pub fn split_image(image: &str) -> anyhow::Result<(&str, &str)> {
    match image.rsplit_once(':') {
        Some((name, tag)) if !tag.contains('/') && !name.is_empty() && !tag.is_empty() => {
            Ok((name, tag))
        }
        _ => bail!("postgres image `{image}` needs a pinned tag, e.g. postgres:17"),
    }
}

/// `docker info` answers within [`DOCKER_PROBE_TIMEOUT`] (the probe without a Docker client compiled in).
#[cfg(not(feature = "docker"))]
pub async fn cli_answers() -> bool {
    use std::process::Stdio;
    let probe = tokio::process::Command::new("docker")
        .args(["info", "--format", "{{.ServerVersion}}"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .status();
    matches!(
        tokio::time::timeout(DOCKER_PROBE_TIMEOUT, probe).await,
        Ok(Ok(status)) if status.success()
    )
}

/// Whether this command line needs the Docker provider: `docker`, or `auto` with an engine answering.
pub fn choice_needs_docker(choice: &PgChoice) -> anyhow::Result<bool> {
    Ok(match choice {
        PgChoice::Docker { .. } => true,
        PgChoice::Auto => crate::runtime()?.block_on(docker_answers()),
        PgChoice::Local | PgChoice::Url(_) => false,
    })
}

/// Called first by every command that may start a Postgres server. With the `docker` feature it does
/// nothing. Without it, when `choice` needs Docker, it builds `xtask-docker` (the same CLI with the
/// feature), runs it with this process's arguments and exits with its code; otherwise it returns.
pub fn hand_over_if_docker(choice: &PgChoice) -> anyhow::Result<()> {
    if let PgChoice::Docker { image } = choice {
        split_image(image)?;
    }
    if cfg!(feature = "docker") || !choice_needs_docker(choice)? {
        return Ok(());
    }
    run_docker_binary()
}

/// Builds and runs `xtask-docker` with this process's arguments; exits with its code.
fn run_docker_binary() -> anyhow::Result<()> {
    let bin = crate::build::target_dir().join("debug/xtask-docker");
    let stamp = crate::build::target_dir().join("debug/.xtask-docker.built");
    if !bin.exists() {
        eprintln!(
            "postgres docker: compiling the Docker provider (testcontainers) once… \
             (xtask-docker; later runs start it directly)"
        );
    }
    if !(bin.exists() && built_after_its_inputs(&stamp)) {
        let sh = xshell::Shell::new()?;
        sh.change_dir(crate::project_root());
        let cargo = crate::cargo();
        // Built rather than `cargo run`: its Compiling lines show progress and no `Running` line
        // echoes the arguments. The feature build of the xtask library hashes apart from the plain
        // one, so the two binaries never rebuild each other.
        let build = crate::without_package_env(xshell::cmd!(
            sh,
            "{cargo} build --package xtask --features docker --bin xtask-docker"
        ));
        let built = std::process::Command::from(build).status()?;
        if !built.success() {
            std::process::exit(built.code().unwrap_or(1));
        }
        let _ = std::fs::write(&stamp, "");
    }
    let status = std::process::Command::new(&bin)
        .args(std::env::args_os().skip(1))
        .status()?;
    std::process::exit(exit_code(status));
}

/// Whether the last successful build of `xtask-docker` (`stamp`) is newer than everything that build
/// reads which `cargo run -p xtask` (that just ran, and rebuilt this binary if it had to) would not
/// already have rebuilt us for: this binary itself, the manifests, `Cargo.lock`, `.cargo/config.toml`
/// and every file under `xtask/src` (the `docker` feature's modules included). Then cargo's own
/// freshness check (half a second on a 2-core machine) is skipped.
fn built_after_its_inputs(stamp: &std::path::Path) -> bool {
    fn newest(path: &std::path::Path, newest_seen: &mut std::time::SystemTime) {
        let Ok(meta) = std::fs::metadata(path) else {
            return;
        };
        if let Ok(modified) = meta.modified() {
            *newest_seen = (*newest_seen).max(modified);
        }
        if meta.is_dir()
            && let Ok(entries) = std::fs::read_dir(path)
        {
            for entry in entries.flatten() {
                newest(&entry.path(), newest_seen);
            }
        }
    }
    let Ok(built) = std::fs::metadata(stamp).and_then(|m| m.modified()) else {
        return false;
    };
    let Ok(exe) = std::env::current_exe() else {
        return false;
    };
    let root = crate::project_root();
    let mut inputs = std::time::SystemTime::UNIX_EPOCH;
    for path in [
        exe,
        root.join("Cargo.lock"),
        root.join("Cargo.toml"),
        root.join("xtask/Cargo.toml"),
        root.join(".cargo/config.toml"),
        root.join("xtask/src"),
    ] {
        newest(&path, &mut inputs);
    }
    built > inputs
}

/// The child's exit code; killed by a signal → 128 + the signal, as a shell reports it.
fn exit_code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `built_after_its_inputs` lists what the `xtask-docker` build reads by hand: it holds while the
    /// xtask has no build script and no path dependency (whose sources would be inputs too).
    #[test]
    fn the_freshness_shortcut_knows_every_input_of_the_xtask_build() {
        let root = crate::project_root();
        assert!(
            !root.join("xtask/build.rs").exists(),
            "a build script: add what it reads"
        );
        let workspace = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
        let path_deps: Vec<&str> = workspace
            .lines()
            .filter(|l| l.contains("path = "))
            .filter_map(|l| l.split_whitespace().next())
            .collect();
        assert!(path_deps.contains(&"init-fn"), "{path_deps:?}");
        let manifest = std::fs::read_to_string(root.join("xtask/Cargo.toml")).unwrap();
        let dependencies = manifest
            .split("\n[dependencies]\n")
            .nth(1)
            .and_then(|rest| rest.split("\n[").next())
            .expect("xtask/Cargo.toml has [dependencies]");
        for line in dependencies
            .lines()
            .filter(|l| !l.trim_start().starts_with('#'))
        {
            let line = line.split(" #").next().unwrap_or_default();
            let name = line.split(['.', ' ', '=']).next().unwrap_or_default();
            assert!(
                !line.contains("path") && !path_deps.contains(&name),
                "xtask depends on a path crate ({line}): add its sources to built_after_its_inputs"
            );
        }
    }

    #[test]
    fn splits_images() {
        assert_eq!(split_image("postgres:17").unwrap(), ("postgres", "17"));
        assert_eq!(
            split_image("r:5000/pg:17-alpine").unwrap(),
            ("r:5000/pg", "17-alpine")
        );
        assert!(split_image("postgres").is_err());
        assert!(split_image("r:5000/pg").is_err());
    }

    #[test]
    fn local_and_url_never_need_docker() {
        assert!(!choice_needs_docker(&PgChoice::Local).unwrap());
        assert!(!choice_needs_docker(&PgChoice::Url("postgres://u@localhost/x".into())).unwrap());
        assert!(
            choice_needs_docker(&PgChoice::Docker {
                image: DEFAULT_IMAGE.into()
            })
            .unwrap()
        );
    }
}
