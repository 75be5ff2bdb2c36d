//! The pieces of this machine the commands need, as one table: for each piece its name, how it
//! gets installed, and how it is checked, side by side in [`Piece::spec`].

use std::path::Path;

use super::check::{
    Probe, Status, aws_credential_source, aws_region, on_path, rie_path, tool_version,
    venv_or_path, venv_package, ziglang_dir,
};
use crate::build::Arch;
use crate::local::postgres::DEFAULT_IMAGE;
use crate::relative as rel;

/// Debian's gosu (package `gosu`): the official `postgres` image's way to drop root.
pub const GOSU: &str = "/usr/sbin/gosu";
/// Debian's busybox (package `busybox`): the `mv` of Alpine-based images.
pub const BUSYBOX: &str = "/bin/busybox";

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
    JsonSchema,
    CfnLint,
    Rie,
    DockerEngine,
    PostgresImage,
    PostgresBinaries,
    Psql,
    OpensslDev,
    Qemu,
    Arm64Glibc,
    ImageTools,
    GnuTime,
    AwsCredentials,
    AwsRegion,
}

use Piece::*;

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

/// A piece's row: its name, its install, its check (what was found, never a secret value).
pub struct Spec {
    pub name: String,
    pub install: Install,
    pub check: Box<dyn Fn(&mut Probe) -> Status>,
}

fn row(
    name: impl Into<String>,
    install: Install,
    check: impl Fn(&mut Probe) -> Status + 'static,
) -> Spec {
    Spec {
        name: name.into(),
        install,
        check: Box::new(check),
    }
}

impl Piece {
    /// The piece's row of the table.
    pub fn spec(self) -> Spec {
        let root = crate::project_root();
        match self {
            Rustfmt => row("rustfmt", Install::RustupComponent("rustfmt"), |_| {
                tool_version("rustfmt", &["--version"])
            }),
            Clippy => row("clippy", Install::RustupComponent("clippy"), |_| {
                tool_version(&crate::cargo(), &["clippy", "--version"])
            }),
            RustTarget(arch) => row(
                format!("rust target {}", arch.rust_target()),
                Install::RustupTarget(arch.rust_target()),
                move |probe| match probe.sysroot() {
                    Some(sysroot) => {
                        let lib = sysroot.join("lib/rustlib").join(arch.rust_target());
                        Status::found(lib.is_dir(), "installed", "not installed")
                    }
                    None => Status::missing("rustc --print sysroot failed"),
                },
            ),
            Zigbuild => row("cargo-zigbuild", Install::Pip("cargo-zigbuild"), |_| {
                venv_or_path("cargo-zigbuild")
            }),
            Ziglang => row(
                "ziglang (zig)",
                Install::Pip("ziglang"),
                move |_| match ziglang_dir(&root) {
                    Some(dir) => Status::ok(rel(&dir)),
                    None => Status::missing("no ziglang package in .venv"),
                },
            ),
            Moto => row("moto_server", Install::Pip("moto[server]"), |_| {
                venv_or_path("moto_server")
            }),
            Squawk => row("squawk", Install::Pip("squawk-cli"), |_| {
                venv_or_path("squawk")
            }),
            Pglast => {
                row(
                    "pglast (libpg_query)",
                    Install::Pip("pglast"),
                    move |_| match venv_package(&root, "pglast") {
                        Some(dir) => Status::ok(rel(&dir)),
                        None => Status::missing("no pglast package in .venv"),
                    },
                )
            }
            JsonSchema => row(
                "jsonschema (EMF schema check)",
                Install::Pip("jsonschema"),
                move |_| match venv_package(&root, "jsonschema") {
                    Some(dir) => Status::ok(rel(&dir)),
                    None => Status::missing("no jsonschema package in .venv"),
                },
            ),
            CfnLint => row("cfn-lint", Install::Pip("cfn-lint"), |_| {
                venv_or_path("cfn-lint")
            }),
            Rie => row(
                "aws-lambda-rie",
                Install::Fetch(
                    "aws-lambda-rie-* from the pinned aws-sam-cli wheel on PyPI into .venv/rie/ (`cargo xtask test-local --runtime rie` does it too)",
                ),
                move |_| {
                    let bin = rie_path(&root);
                    Status::found(bin.is_file(), &rel(&bin), "not in .venv/rie/")
                },
            ),
            DockerEngine => row(
                "Docker engine",
                Install::SharedScript("ensure-docker.sh", &[]),
                |probe| {
                    if probe.docker() {
                        Status::ok("answers")
                    } else if on_path("docker").is_some() {
                        Status::missing("`docker info` does not answer")
                    } else {
                        Status::missing("no docker on PATH")
                    }
                },
            ),
            PostgresImage => row(
                format!("image {DEFAULT_IMAGE}"),
                Install::SharedScript("offline-postgres-image.sh", &[DEFAULT_IMAGE]),
                |probe| {
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
                },
            ),
            PostgresBinaries => row(
                "PostgreSQL server binaries",
                Install::Apt(&["postgresql"]),
                |_| match crate::local::postgres::local_bin_dir() {
                    Ok(dir) => Status::ok(dir.display().to_string()),
                    Err(_) => Status::missing("no initdb/pg_ctl/postgres/pg_dump"),
                },
            ),
            Psql => row("psql", Install::Apt(&["postgresql-client"]), |_| {
                on_path_status("psql")
            }),
            OpensslDev => row(
                "OpenSSL headers (libssl-dev, pkg-config)",
                Install::Apt(&["libssl-dev", "pkg-config"]),
                |_| {
                    // What openssl-sys asks when it links the host bootstrap against the system libssl.
                    let found = std::process::Command::new("pkg-config")
                        .args(["--exists", "openssl"])
                        .status()
                        .is_ok_and(|s| s.success());
                    Status::found(
                        found,
                        "pkg-config finds openssl",
                        "pkg-config finds no openssl",
                    )
                },
            ),
            Qemu => row(
                "qemu-aarch64-static",
                Install::Apt(&["qemu-user-static"]),
                |_| on_path_status("qemu-aarch64-static"),
            ),
            Arm64Glibc => row(
                "arm64 glibc",
                Install::Apt(&["libc6-arm64-cross", "libgcc-s1-arm64-cross"]),
                |_| {
                    let lib = Path::new("/usr/aarch64-linux-gnu/lib");
                    let ok = ["ld-linux-aarch64.so.1", "libgcc_s.so.1"]
                        .iter()
                        .all(|f| lib.join(f).exists());
                    Status::found(
                        ok,
                        "/usr/aarch64-linux-gnu",
                        "no /usr/aarch64-linux-gnu/lib",
                    )
                },
            ),
            ImageTools => row(
                "gosu, busybox (a test's variant of the image)",
                Install::Apt(&["gosu", "busybox"]),
                |_| {
                    // The official image drops root with gosu; Alpine's `mv` is busybox's. A test
                    // copies these two host binaries into a variant of the offline image.
                    let missing: Vec<&str> = [GOSU, BUSYBOX]
                        .into_iter()
                        .filter(|p| !Path::new(p).is_file())
                        .collect();
                    if missing.is_empty() {
                        Status::ok(format!("{GOSU}, {BUSYBOX}"))
                    } else {
                        Status::missing(format!("no {}", missing.join(", ")))
                    }
                },
            ),
            GnuTime => row("/usr/bin/time", Install::Apt(&["time"]), |_| {
                Status::found(Path::new("/usr/bin/time").is_file(), "present", "absent")
            }),
            AwsCredentials => row(
                "AWS credentials",
                Install::Manual(
                    "aws configure (or export AWS_PROFILE=<profile>); tests never need it (moto on 127.0.0.1)",
                ),
                |_| match aws_credential_source(&|k| std::env::var_os(k)) {
                    Some(source) => Status::ok(format!("{source} (values not shown)")),
                    None => Status::missing("none (env, ~/.aws)"),
                },
            ),
            AwsRegion => row(
                "AWS region",
                Install::Manual("export AWS_REGION=<region>"),
                |_| Status::ok(aws_region(&|k| std::env::var(k).ok())),
            ),
        }
    }

    pub fn name(self) -> String {
        self.spec().name
    }

    pub fn install(self) -> Install {
        self.spec().install
    }

    /// Whether this machine has the piece, and what was found (never a secret value).
    pub fn check(self, probe: &mut Probe) -> Status {
        (self.spec().check)(probe)
    }
}

fn on_path_status(name: &str) -> Status {
    match on_path(name) {
        Some(p) => Status::ok(p.display().to_string()),
        None => Status::missing("not on PATH"),
    }
}
