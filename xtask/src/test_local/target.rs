//! The bootstrap test-local runs and how it runs: the host build of a cargo profile, or the arm64
//! Lambda build under qemu-user.

use std::path::PathBuf;

use anyhow::Context;
use xshell::{Shell, cmd};

use crate::local::logging::LogControls;

/// The bootstrap to run and how to run it.
#[derive(Clone, Debug)]
pub struct Target {
    pub bootstrap: PathBuf,
    /// E.g. `["qemu-aarch64-static"]` for an arm64 bootstrap on an x86_64 machine.
    pub wrapper: Option<Vec<String>>,
    /// Extra variables for the process (e.g. `QEMU_LD_PREFIX`).
    pub env: Vec<(String, String)>,
    /// The function's logging controls; `None`: no `LoggingConfig` (text lines).
    pub logging: Option<LogControls>,
}

impl Target {
    /// The native release build, `target/release/init-fn`.
    pub fn host(bootstrap: PathBuf) -> Target {
        Target {
            bootstrap,
            wrapper: None,
            env: Vec::new(),
            logging: None,
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
            logging: None,
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
    if !profile.bootstrap_path().exists() {
        eprintln!("{}", crate::build::FIRST_BUILD_NOTE);
    }
    // Not --quiet: cargo's progress (or its Compiling lines off a tty) shows the build is alive.
    crate::without_package_env(cmd!(sh, "{cargo} build --profile {name} -p init-fn"))
        .run()
        .with_context(|| format!("test-local: build the bootstrap ({name} profile)"))?;
    Ok(profile.bootstrap_path())
}

/// `cargo build --profile local -p init-fn`; returns `target/local/init-fn`: what the tests run (the
/// shipped code and features, `panic = "abort"` included; the shipped `[profile.release]` itself is
/// exercised by `cargo xtask test`'s arm64 run, the Lambda build as deployed).
pub fn build_local_bootstrap() -> anyhow::Result<PathBuf> {
    build_bootstrap(Profile::Local)
}

/// `cargo build --release -p init-fn`; returns `target/release/init-fn`.
pub fn build_release_bootstrap() -> anyhow::Result<PathBuf> {
    build_bootstrap(Profile::Release)
}
