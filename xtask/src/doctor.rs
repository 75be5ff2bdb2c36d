//! `cargo xtask doctor`: for each command, what it needs from this machine, whether it is there, and
//! the exact command that fixes each missing piece. `cargo xtask test` runs [`setup`] over the same
//! list before it compiles anything: it installs what it can and otherwise stops with this report.
//!
//! To teach the project a new tool: add a [`Piece`], its [`Piece::check`], its [`Piece::install`],
//! and list it in the [`COMMANDS`] entries that need it. Nothing else installs anything.

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
};

use anyhow::bail;
use xshell::{Shell, cmd};

use crate::{build::Arch, local::postgres::DEFAULT_IMAGE, relative as rel};

/// Show what every command needs and what this machine lacks, with the command fixing each piece.
/// Exits non-zero when something `cargo xtask test` needs is missing
#[derive(clap::Args)]
pub struct Doctor {
    /// Install what `cargo xtask test` needs first (what `test` does by itself), then report
    #[arg(long)]
    fix: bool,
}

impl Doctor {
    pub fn run(self, sh: &Shell) -> anyhow::Result<()> {
        if self.fix {
            install_missing(sh, test_needs())?;
        }
        let report = Report::probe();
        report.print(&COMMANDS.iter().collect::<Vec<_>>());
        let missing = report.missing_for(test_needs());
        if !missing.is_empty() {
            bail!(
                "doctor: `cargo xtask test` needs {} (fixes above)",
                names(&missing)
            );
        }
        Ok(())
    }
}

/// One thing a command needs from the machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Piece {
    Rustfmt,
    Clippy,
    RustTarget(Arch),
    Zigbuild,
    Ziglang,
    Moto,
    Squawk,
    Pglast,
    CfnLint,
    Rie,
    DockerEngine,
    PostgresImage,
    PostgresBinaries,
    Psql,
    Qemu,
    Arm64Glibc,
    GnuTime,
    OpenSsl,
    AwsCredentials,
    AwsRegion,
}

/// A command and what it needs. `postgres` commands need a PostgreSQL server: the Docker engine with
/// the image, or else the local binaries.
pub struct Needs {
    pub command: &'static str,
    pub pieces: &'static [Piece],
    pub postgres: bool,
}

use Piece::*;

/// Every command, `test` first (its pieces are the ones `setup` installs and doctor's exit code covers).
pub const COMMANDS: &[Needs] = &[
    Needs {
        command: "test",
        pieces: &[
            Rustfmt,
            Clippy,
            RustTarget(Arch::Arm64),
            Zigbuild,
            Ziglang,
            Moto,
            Squawk,
            Pglast,
            CfnLint,
            Rie,
            DockerEngine,
            PostgresImage,
            PostgresBinaries,
            Psql,
            Qemu,
            Arm64Glibc,
            OpenSsl,
        ],
        postgres: false,
    },
    Needs {
        command: "test-local",
        pieces: &[OpenSsl],
        postgres: true,
    },
    Needs {
        command: "build",
        pieces: &[
            Zigbuild,
            Ziglang,
            RustTarget(Arch::Arm64),
            RustTarget(Arch::X86_64),
        ],
        postgres: false,
    },
    Needs {
        command: "deploy",
        pieces: &[
            Zigbuild,
            Ziglang,
            RustTarget(Arch::Arm64),
            AwsCredentials,
            AwsRegion,
        ],
        postgres: false,
    },
    Needs {
        command: "invoke/clean",
        pieces: &[AwsCredentials, AwsRegion],
        postgres: false,
    },
    Needs {
        command: "serve",
        pieces: &[OpenSsl],
        postgres: true,
    },
    Needs {
        command: "bench",
        pieces: &[Psql, GnuTime, OpenSsl],
        postgres: true,
    },
    Needs {
        command: "lint",
        pieces: &[Squawk],
        postgres: false,
    },
    Needs {
        command: "test-local --runtime rie",
        pieces: &[Rie, OpenSsl],
        postgres: true,
    },
    Needs {
        command: "test-local --arch arm64",
        pieces: &[Zigbuild, Ziglang, RustTarget(Arch::Arm64), Qemu, Arm64Glibc],
        postgres: true,
    },
];

/// What `cargo xtask test` needs.
pub fn test_needs() -> &'static Needs {
    &COMMANDS[0]
}

/// How a missing piece gets onto the machine.
pub enum Install {
    /// `rustup component add <name>` (user level: done without asking).
    RustupComponent(&'static str),
    /// `rustup target add <triple>` (user level).
    RustupTarget(&'static str),
    /// A pip requirement installed into `<root>/.venv` (user level).
    Pip(&'static str),
    /// Debian packages: installed when running as root with apt-get, else printed.
    Apt(&'static [&'static str]),
    /// A script of the shared CI directory (`SHARED_DIR`, default `../shared`) with its arguments:
    /// the same scripts `.ci/run` used to call; run when root, else printed.
    SharedScript(&'static str, &'static [&'static str]),
    /// Fetched by xtask itself (user level); the text says from where.
    Fetch(&'static str),
    /// Only the person can do it; the text says how.
    Manual(&'static str),
}

impl Piece {
    pub fn name(self) -> String {
        match self {
            Rustfmt => "rustfmt".into(),
            Clippy => "clippy".into(),
            RustTarget(arch) => format!("rust target {}", arch.rust_target()),
            Zigbuild => "cargo-zigbuild".into(),
            Ziglang => "ziglang (zig)".into(),
            Moto => "moto_server".into(),
            Squawk => "squawk".into(),
            Pglast => "pglast (libpg_query)".into(),
            CfnLint => "cfn-lint".into(),
            Rie => "aws-lambda-rie".into(),
            DockerEngine => "Docker engine".into(),
            PostgresImage => format!("image {DEFAULT_IMAGE}"),
            PostgresBinaries => "PostgreSQL server binaries".into(),
            Psql => "psql".into(),
            Qemu => "qemu-aarch64-static".into(),
            Arm64Glibc => "arm64 glibc".into(),
            GnuTime => "/usr/bin/time".into(),
            OpenSsl => "libssl-dev + pkg-config".into(),
            AwsCredentials => "AWS credentials".into(),
            AwsRegion => "AWS region".into(),
        }
    }

    pub fn install(self) -> Install {
        match self {
            Rustfmt => Install::RustupComponent("rustfmt"),
            Clippy => Install::RustupComponent("clippy"),
            RustTarget(arch) => Install::RustupTarget(arch.rust_target()),
            Zigbuild => Install::Pip("cargo-zigbuild"),
            Ziglang => Install::Pip("ziglang"),
            Moto => Install::Pip("moto[server]"),
            Squawk => Install::Pip("squawk-cli"),
            Pglast => Install::Pip("pglast"),
            CfnLint => Install::Pip("cfn-lint"),
            Rie => Install::Fetch(
                "aws-lambda-rie-* from the pinned aws-sam-cli wheel on PyPI into .venv/rie/ (`cargo xtask test-local --runtime rie` does it too)",
            ),
            DockerEngine => Install::SharedScript("ensure-docker.sh", &[]),
            PostgresImage => Install::SharedScript("offline-postgres-image.sh", &[DEFAULT_IMAGE]),
            PostgresBinaries => Install::Apt(&["postgresql"]),
            Psql => Install::Apt(&["postgresql-client"]),
            Qemu => Install::Apt(&["qemu-user-static"]),
            Arm64Glibc => Install::Apt(&["libc6-arm64-cross", "libgcc-s1-arm64-cross"]),
            GnuTime => Install::Apt(&["time"]),
            // Host builds link the system libssl; only the Lambda builds compile OpenSSL (build.rs).
            OpenSsl => Install::Apt(&["libssl-dev", "pkg-config"]),
            AwsCredentials => Install::Manual(
                "aws configure (or export AWS_PROFILE=<profile>); tests never need it (moto on 127.0.0.1)",
            ),
            AwsRegion => Install::Manual("export AWS_REGION=<region>"),
        }
    }

    /// Whether this machine has the piece, and what was found (never a secret value).
    pub fn check(self, probe: &mut Probe) -> Status {
        let root = crate::project_root();
        match self {
            Rustfmt => tool_version("rustfmt", &["--version"]),
            Clippy => tool_version(&crate::cargo(), &["clippy", "--version"]),
            RustTarget(arch) => match probe.sysroot() {
                Some(sysroot) => {
                    let lib = sysroot.join("lib/rustlib").join(arch.rust_target());
                    Status::found(lib.is_dir(), "installed", "not installed")
                }
                None => Status::missing("rustc --print sysroot failed"),
            },
            Zigbuild => venv_or_path("cargo-zigbuild"),
            Ziglang => match ziglang_dir(&root) {
                Some(dir) => Status::ok(rel(&dir)),
                None => Status::missing("no ziglang package in .venv"),
            },
            Moto => venv_or_path("moto_server"),
            Squawk => venv_or_path("squawk"),
            Pglast => match venv_package(&root, "pglast") {
                Some(dir) => Status::ok(rel(&dir)),
                None => Status::missing("no pglast package in .venv"),
            },
            CfnLint => venv_or_path("cfn-lint"),
            Rie => {
                let bin = rie_path(&root);
                Status::found(bin.is_file(), &rel(&bin), "not in .venv/rie/")
            }
            DockerEngine => {
                if probe.docker() {
                    Status::ok("answers")
                } else if on_path("docker").is_some() {
                    Status::missing("`docker info` does not answer")
                } else {
                    Status::missing("no docker on PATH")
                }
            }
            PostgresImage => {
                if !probe.docker() {
                    return Status::missing("unknown: no Docker engine answers");
                }
                let present = std::process::Command::new("docker")
                    .args(["image", "inspect", "--format", "{{.Id}}", DEFAULT_IMAGE])
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success());
                Status::found(present, "present", "not pulled")
            }
            PostgresBinaries => match crate::local::postgres::local_bin_dir() {
                Ok(dir) => Status::ok(dir.display().to_string()),
                Err(_) => Status::missing("no initdb/pg_ctl/postgres/pg_dump"),
            },
            Psql => match on_path("psql") {
                Some(p) => Status::ok(p.display().to_string()),
                None => Status::missing("not on PATH"),
            },
            Qemu => match on_path("qemu-aarch64-static") {
                Some(p) => Status::ok(p.display().to_string()),
                None => Status::missing("not on PATH"),
            },
            Arm64Glibc => {
                let lib = Path::new("/usr/aarch64-linux-gnu/lib");
                let ok = ["ld-linux-aarch64.so.1", "libgcc_s.so.1"]
                    .iter()
                    .all(|f| lib.join(f).exists());
                Status::found(
                    ok,
                    "/usr/aarch64-linux-gnu",
                    "no /usr/aarch64-linux-gnu/lib",
                )
            }
            GnuTime => Status::found(Path::new("/usr/bin/time").is_file(), "present", "absent"),
            OpenSsl => match tool_version("pkg-config", &["--modversion", "openssl"]) {
                found if found.ok => Status::ok(format!("openssl {}", found.detail)),
                _ => Status::missing("`pkg-config --modversion openssl` fails"),
            },
            AwsCredentials => match aws_credential_source(&|k| std::env::var_os(k)) {
                Some(source) => Status::ok(format!("{source} (values not shown)")),
                None => Status::missing("none (env, ~/.aws)"),
            },
            AwsRegion => Status::ok(aws_region(&|k| std::env::var(k).ok())),
        }
    }
}

/// What [`Piece::check`] found.
#[derive(Clone, Debug)]
pub struct Status {
    pub ok: bool,
    pub detail: String,
}

impl Status {
    fn ok(detail: impl Into<String>) -> Status {
        Status {
            ok: true,
            detail: detail.into(),
        }
    }
    fn missing(detail: impl Into<String>) -> Status {
        Status {
            ok: false,
            detail: detail.into(),
        }
    }
    fn found(ok: bool, yes: &str, no: &str) -> Status {
        Status {
            ok,
            detail: if ok { yes } else { no }.to_string(),
        }
    }
}

/// Answers several checks share, asked once.
#[derive(Default)]
pub struct Probe {
    sysroot: Option<Option<PathBuf>>,
    docker: Option<bool>,
}

impl Probe {
    fn sysroot(&mut self) -> Option<PathBuf> {
        self.sysroot
            .get_or_insert_with(|| {
                let out = std::process::Command::new("rustc")
                    .args(["--print", "sysroot"])
                    .output()
                    .ok()?;
                out.status
                    .success()
                    .then(|| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
            })
            .clone()
    }

    fn docker(&mut self) -> bool {
        *self.docker.get_or_insert_with(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map(|rt| rt.block_on(crate::local::postgres::docker_answers()))
                .unwrap_or(false)
        })
    }
}

/// Every piece any command needs, checked once.
pub struct Report {
    results: Vec<(Piece, Status)>,
}

impl Report {
    pub fn probe() -> Report {
        let mut probe = Probe::default();
        let pieces: BTreeSet<Piece> = COMMANDS
            .iter()
            .flat_map(|n| n.pieces.iter().copied().chain(postgres_pieces(n)))
            .collect();
        Report {
            results: pieces
                .into_iter()
                .map(|p| (p, p.check(&mut probe)))
                .collect(),
        }
    }

    fn status(&self, piece: Piece) -> Option<&Status> {
        self.results
            .iter()
            .find(|(p, _)| *p == piece)
            .map(|(_, s)| s)
    }

    fn has(&self, piece: Piece) -> bool {
        self.status(piece).is_some_and(|s| s.ok)
    }

    /// The pieces `needs` lacks (for a PostgreSQL server: Docker with the image, else the binaries).
    pub fn missing_for(&self, needs: &Needs) -> Vec<Piece> {
        let mut missing: Vec<Piece> = needs
            .pieces
            .iter()
            .copied()
            .filter(|p| !self.has(*p))
            .collect();
        if needs.postgres {
            let docker = self.has(DockerEngine) && self.has(PostgresImage);
            if !docker && !self.has(PostgresBinaries) {
                for piece in [DockerEngine, PostgresImage, PostgresBinaries] {
                    if !self.has(piece) && !missing.contains(&piece) {
                        missing.push(piece);
                    }
                }
            }
        }
        missing
    }

    /// The pieces table, one verdict per command, then the fixes for what `commands` lack.
    pub fn print(&self, commands: &[&Needs]) {
        println!("{:<8} {:<38} {:<30} needed by", "", "piece", "found");
        for (piece, status) in &self.results {
            let users: Vec<&str> = commands
                .iter()
                .filter(|n| n.pieces.contains(piece))
                .map(|n| n.command)
                .collect();
            let alt = commands
                .iter()
                .any(|n| n.postgres && postgres_pieces(n).any(|p| p == *piece));
            if users.is_empty() && !alt {
                continue;
            }
            let mut by = users.join(", ");
            if alt {
                by.push_str(if by.is_empty() { "" } else { ", " });
                by.push_str("(a PostgreSQL server)");
            }
            println!(
                "{:<8} {:<38} {:<30} {by}",
                if status.ok { "ok" } else { "MISSING" },
                piece.name(),
                clip(&status.detail, 30),
            );
        }
        println!(
            "(a PostgreSQL server: the Docker engine with {DEFAULT_IMAGE}, else the local binaries)"
        );
        println!();
        let mut lacking = Vec::new();
        for needs in commands {
            let missing = self.missing_for(needs);
            let verdict = if missing.is_empty() {
                "ready".to_string()
            } else {
                format!("missing {}", names(&missing))
            };
            println!("  {:<26} {verdict}", needs.command);
            lacking.extend(missing);
        }
        lacking.sort();
        lacking.dedup();
        if !lacking.is_empty() {
            println!(
                "\nto fix (`cargo xtask test` runs the ones marked * itself; + when root with apt):"
            );
            for line in fixes(&lacking) {
                println!("  {line}");
            }
        }
    }
}

/// The pieces a PostgreSQL server may come from, when `needs` wants one.
fn postgres_pieces(needs: &Needs) -> impl Iterator<Item = Piece> {
    needs
        .postgres
        .then_some([DockerEngine, PostgresImage, PostgresBinaries])
        .into_iter()
        .flatten()
}

/// The commands that install `missing`, grouped: one rustup, one pip, one apt line.
pub fn fixes(missing: &[Piece]) -> Vec<String> {
    let (mut components, mut targets, mut pip, mut apt) = (vec![], vec![], vec![], vec![]);
    let mut other = Vec::new();
    for piece in missing {
        match piece.install() {
            Install::RustupComponent(c) => components.push(c),
            Install::RustupTarget(t) => targets.push(t),
            Install::Pip(req) => pip.push(format!("'{req}'")),
            Install::Apt(pkgs) => apt.extend_from_slice(pkgs),
            Install::SharedScript(script, args) => other.push(match shared_script(script) {
                Some(path) => format!("+ bash {} {}", rel(&path), args.join(" ")),
                None => manual_fix_for(*piece).to_string(),
            }),
            Install::Fetch(text) => other.push(format!("* {}: {text}", piece.name())),
            Install::Manual(text) => other.push(format!("  {}: {text}", piece.name())),
        }
    }
    let mut lines = Vec::new();
    if !components.is_empty() {
        lines.push(format!("* rustup component add {}", components.join(" ")));
    }
    if !targets.is_empty() {
        lines.push(format!("* rustup target add {}", targets.join(" ")));
    }
    if !pip.is_empty() {
        lines.push(format!(
            "* python3 -m venv .venv && .venv/bin/pip install {}",
            pip.join(" ")
        ));
    }
    if !apt.is_empty() {
        apt.dedup();
        lines.push(format!("+ apt-get install -y {}", apt.join(" ")));
    }
    lines.extend(other);
    lines
}

/// The fix for a shared-script piece on a machine without the shared CI directory.
fn manual_fix_for(piece: Piece) -> &'static str {
    match piece {
        DockerEngine => {
            "  Docker engine: install Docker and start it (Debian: apt-get install docker.io)"
        }
        PostgresImage => "  image: docker pull postgres:17",
        _ => "  see README",
    }
}

/// Installs what `needs` lacks: rustup components and targets and the `.venv` tools always; Debian
/// packages and the shared CI scripts when running as root with apt-get. Then checks again and, if
/// anything is still missing, prints the doctor's report for `needs` and fails.
pub fn setup(sh: &Shell, needs: &Needs) -> anyhow::Result<()> {
    install_missing(sh, needs)?;
    let report = Report::probe();
    let missing = report.missing_for(needs);
    if missing.is_empty() {
        return Ok(());
    }
    report.print(&[needs]);
    bail!(
        "{}: this machine lacks {} (install it as shown above, or run `cargo xtask doctor`)",
        needs.command,
        names(&missing)
    )
}

fn install_missing(sh: &Shell, needs: &Needs) -> anyhow::Result<()> {
    let report = Report::probe();
    let missing = report.missing_for(needs);
    if missing.is_empty() {
        eprintln!("setup: everything `{}` needs is present", needs.command);
        return Ok(());
    }
    eprintln!("setup: installing {}", names(&missing));
    let root = crate::project_root();
    let admin = is_root() && on_path("apt-get").is_some();
    let (mut components, mut targets, mut pip, mut apt) = (vec![], vec![], vec![], vec![]);
    let mut scripts = Vec::new();
    let mut fetch = Vec::new();
    for piece in &missing {
        match piece.install() {
            Install::RustupComponent(c) => components.push(c),
            Install::RustupTarget(t) => targets.push(t),
            Install::Pip(req) => pip.push(req),
            Install::Apt(pkgs) => apt.extend_from_slice(pkgs),
            Install::SharedScript(script, args) => scripts.push((script, args)),
            Install::Fetch(_) => fetch.push(*piece),
            Install::Manual(_) => {}
        }
    }
    // Failures are reported and left to the second check, which names what is still missing.
    let attempt = |what: &str, result: anyhow::Result<()>| {
        if let Err(err) = result {
            eprintln!(
                "setup: {what} failed: {}",
                crate::error::chain(err.as_ref())
            );
        }
    };
    if admin && !apt.is_empty() {
        attempt("apt-get install", apt_install(sh, &apt));
    }
    if admin {
        for (script, args) in scripts {
            if let Some(path) = shared_script(script) {
                attempt(
                    script,
                    cmd!(sh, "bash {path} {args...}").run().map_err(Into::into),
                );
            }
        }
    }
    if !components.is_empty() {
        attempt(
            "rustup component add",
            cmd!(sh, "rustup component add {components...}")
                .run()
                .map_err(Into::into),
        );
    }
    if !targets.is_empty() {
        attempt(
            "rustup target add",
            cmd!(sh, "rustup target add {targets...}")
                .run()
                .map_err(Into::into),
        );
    }
    if !pip.is_empty() {
        attempt("pip install into .venv", pip_install(sh, &root, &pip));
    }
    // After pip: the RIE fetch uses the venv's pip.
    for piece in fetch {
        if piece == Rie {
            attempt(
                "fetch aws-lambda-rie",
                crate::local::rie::ensure_rie().map(drop),
            );
        }
    }
    Ok(())
}

/// `pip install` into `<root>/.venv`, creating the venv first.
pub fn pip_install(sh: &Shell, root: &Path, requirements: &[&str]) -> anyhow::Result<()> {
    let venv = root.join(".venv");
    let pip = venv.join("bin/pip");
    if !pip.exists() {
        cmd!(sh, "python3 -m venv {venv}").run()?;
    }
    cmd!(
        sh,
        "{pip} install --disable-pip-version-check {requirements...}"
    )
    .run()?;
    Ok(())
}

fn apt_install(sh: &Shell, packages: &[&str]) -> anyhow::Result<()> {
    let _env = sh.push_env("DEBIAN_FRONTEND", "noninteractive");
    // Other installs may hold the dpkg lock for a while: wait rather than fail.
    let lock = "DPkg::Lock::Timeout=600";
    cmd!(sh, "apt-get -o {lock} update -qq").run()?;
    // `-q`, not `-qq`: one line per package unpacked, so a long install shows it is moving.
    cmd!(sh, "apt-get -o {lock} install -y -q {packages...}").run()?;
    Ok(())
}

/// `<SHARED_DIR or ../shared>/ci/<name>` when it exists.
fn shared_script(name: &str) -> Option<PathBuf> {
    let dir = std::env::var_os("SHARED_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::project_root().join("../shared"));
    let path = dir.join("ci").join(name);
    path.is_file()
        .then(|| std::fs::canonicalize(&path).unwrap_or(path))
}

fn names(pieces: &[Piece]) -> String {
    pieces
        .iter()
        .map(|p| p.name())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Where AWS credentials would come from, by variable or file name only.
pub fn aws_credential_source(var: &dyn Fn(&str) -> Option<std::ffi::OsString>) -> Option<String> {
    let set = |k: &str| var(k).is_some_and(|v| !v.is_empty());
    if set("AWS_ACCESS_KEY_ID") && set("AWS_SECRET_ACCESS_KEY") {
        return Some("AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY".into());
    }
    for name in [
        "AWS_PROFILE",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    ] {
        if set(name) {
            return Some(name.into());
        }
    }
    let home = var("HOME").map(PathBuf::from)?;
    ["credentials", "config"]
        .iter()
        .map(|f| home.join(".aws").join(f))
        .find(|p| p.is_file())
        .map(|p| {
            format!(
                "~/.aws/{}",
                p.file_name().unwrap_or_default().to_string_lossy()
            )
        })
}

/// The region the AWS commands use and where it comes from.
pub fn aws_region(var: &dyn Fn(&str) -> Option<String>) -> String {
    for name in ["AWS_REGION", "AWS_DEFAULT_REGION"] {
        if let Some(region) = var(name).filter(|v| !v.is_empty()) {
            return format!("{region} ({name})");
        }
    }
    "eu-west-3 (init-fn/Cargo.toml)".into()
}

fn tool_version(program: &str, args: &[&str]) -> Status {
    match std::process::Command::new(program).args(args).output() {
        // `rustfmt 1.9.0-stable (hash date)` -> `rustfmt 1.9.0-stable`
        Ok(out) if out.status.success() => Status::ok(
            String::from_utf8_lossy(&out.stdout)
                .split_whitespace()
                .take(2)
                .collect::<Vec<_>>()
                .join(" "),
        ),
        _ => Status::missing(format!("`{program} {}` fails", args.join(" "))),
    }
}

fn venv_or_path(name: &str) -> Status {
    let venv = crate::project_root().join(".venv/bin").join(name);
    if venv.is_file() {
        return Status::ok(rel(&venv));
    }
    match on_path(name) {
        Some(p) => Status::ok(p.display().to_string()),
        None => Status::missing("not in .venv/bin nor on PATH"),
    }
}

/// `.venv/lib/python3.*/site-packages/ziglang` holding the zig binary.
fn ziglang_dir(root: &Path) -> Option<PathBuf> {
    venv_package(root, "ziglang").filter(|d| d.join("zig").is_file())
}

/// `.venv/lib/python3.*/site-packages/<package>` when installed.
fn venv_package(root: &Path, package: &str) -> Option<PathBuf> {
    std::fs::read_dir(root.join(".venv/lib"))
        .ok()?
        .flatten()
        .map(|e| e.path().join("site-packages").join(package))
        .find(|d| d.is_dir())
}

/// `.venv/rie/aws-lambda-rie-<arch>` for this machine's architecture.
pub fn rie_path(root: &Path) -> PathBuf {
    let arch = if cfg!(target_arch = "aarch64") {
        "arm64"
    } else {
        "x86_64"
    };
    root.join(".venv/rie")
        .join(format!("aws-lambda-rie-{arch}"))
}

/// The first `name` on PATH.
pub fn on_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

#[cfg(unix)]
fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

#[cfg(not(unix))]
fn is_root() -> bool {
    false
}

fn clip(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_string();
    }
    let mut s: String = text.chars().take(width - 1).collect();
    s.push('…');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credential_source_names_the_variable_never_the_value() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| std::ffi::OsString::from(v))
            }
        };
        let keys = env(&[
            ("AWS_ACCESS_KEY_ID", "AKIDSECRETVALUE"),
            ("AWS_SECRET_ACCESS_KEY", "wJalrSECRET"),
            ("HOME", "/nonexistent"),
        ]);
        assert_eq!(
            aws_credential_source(&keys).as_deref(),
            Some("AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY")
        );
        assert_eq!(
            aws_credential_source(&env(&[("AWS_PROFILE", "prod"), ("HOME", "/nonexistent")])),
            Some("AWS_PROFILE".into())
        );
        assert_eq!(
            aws_credential_source(&env(&[("HOME", "/nonexistent")])),
            None
        );
    }

    #[test]
    fn fixes_group_user_level_installs_into_one_line_each() {
        let lines = fixes(&[
            Rustfmt,
            Clippy,
            RustTarget(Arch::Arm64),
            Zigbuild,
            Moto,
            Qemu,
            Arm64Glibc,
        ]);
        assert_eq!(lines[0], "* rustup component add rustfmt clippy");
        assert_eq!(lines[1], "* rustup target add aarch64-unknown-linux-gnu");
        assert_eq!(
            lines[2],
            "* python3 -m venv .venv && .venv/bin/pip install 'cargo-zigbuild' 'moto[server]'"
        );
        assert_eq!(
            lines[3],
            "+ apt-get install -y qemu-user-static libc6-arm64-cross libgcc-s1-arm64-cross"
        );
    }

    #[test]
    fn a_postgres_command_is_ready_with_either_provider() {
        let report = |docker: bool, binaries: bool| Report {
            results: vec![
                (DockerEngine, Status::found(docker, "", "")),
                (PostgresImage, Status::found(docker, "", "")),
                (PostgresBinaries, Status::found(binaries, "", "")),
                (OpenSsl, Status::found(true, "", "")),
            ],
        };
        let serve = COMMANDS.iter().find(|n| n.command == "serve").unwrap();
        assert!(report(true, false).missing_for(serve).is_empty());
        assert!(report(false, true).missing_for(serve).is_empty());
        assert_eq!(
            report(false, false).missing_for(serve),
            [DockerEngine, PostgresImage, PostgresBinaries]
        );
        // `test` wants both providers: CI runs test-local on each.
        assert!(
            !report(true, false)
                .missing_for(test_needs())
                .contains(&DockerEngine)
        );
        assert!(
            report(true, false)
                .missing_for(test_needs())
                .contains(&PostgresBinaries)
        );
    }
}
