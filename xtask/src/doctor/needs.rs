//! What each command needs from the machine, as lists of pieces; the lists several commands share
//! are named once.

use super::piece::Piece::{self, *};
use crate::build::Arch;

/// A command and what it needs. `postgres` commands need a PostgreSQL server: the Docker engine with
/// the image, or else the local binaries.
pub struct Needs {
    pub command: &'static str,
    /// Groups of pieces, all needed.
    pub groups: &'static [&'static [Piece]],
    pub postgres: bool,
}

impl Needs {
    /// Every piece the command needs, in order.
    pub fn pieces(&self) -> impl Iterator<Item = Piece> + '_ {
        self.groups.iter().flat_map(|g| g.iter().copied())
    }

    /// The pieces a PostgreSQL server may come from, when the command wants one.
    pub fn postgres_pieces(&self) -> &'static [Piece] {
        if self.postgres { POSTGRES_SERVER } else { &[] }
    }
}

/// Building the arm64 bootstrap on this machine.
const ARM64_BUILD: &[Piece] = &[RustTarget(Arch::Arm64), Zigbuild, Ziglang];
/// Running the arm64 bootstrap on this machine.
const ARM64_RUN: &[Piece] = &[Qemu, Arm64Glibc];
/// Building the host bootstrap (and the tests, which link init-fn): openssl-sys links the system
/// libssl through pkg-config. The Lambda builds compile OpenSSL from source instead.
const HOST_BUILD: &[Piece] = &[OpensslDev];
/// Talking to AWS.
const AWS: &[Piece] = &[AwsCredentials, AwsRegion];
/// Where a PostgreSQL server may come from: Docker with the image, or the local binaries.
pub const POSTGRES_SERVER: &[Piece] = &[DockerEngine, PostgresImage, PostgresBinaries];

/// Every command, `test` first (its pieces are the ones `setup` installs and doctor's exit code covers).
pub const COMMANDS: &[Needs] = &[
    Needs {
        command: "test",
        // `test` wants both PostgreSQL providers: CI runs test-local on each.
        groups: &[
            &[Rustfmt, Clippy],
            HOST_BUILD,
            ARM64_BUILD,
            &[Moto, Squawk, Pglast, JsonSchema, CfnLint, Rie],
            POSTGRES_SERVER,
            &[Psql, ImageTools],
            ARM64_RUN,
        ],
        postgres: false,
    },
    Needs {
        command: "test-local",
        groups: &[HOST_BUILD],
        postgres: true,
    },
    Needs {
        command: "build",
        groups: &[ARM64_BUILD, &[RustTarget(Arch::X86_64)]],
        postgres: false,
    },
    Needs {
        command: "deploy",
        // xtask's deploy code links init-fn (its config) on the host.
        groups: &[HOST_BUILD, ARM64_BUILD, AWS],
        postgres: false,
    },
    Needs {
        command: "invoke/clean",
        groups: &[AWS],
        postgres: false,
    },
    Needs {
        command: "serve",
        groups: &[HOST_BUILD],
        postgres: true,
    },
    Needs {
        command: "bench",
        groups: &[HOST_BUILD, &[Psql, GnuTime]],
        postgres: true,
    },
    Needs {
        command: "lint",
        groups: &[&[Squawk]],
        postgres: false,
    },
    Needs {
        command: "test-local --runtime rie",
        groups: &[HOST_BUILD, &[Rie]],
        postgres: true,
    },
    Needs {
        command: "test-local --arch arm64",
        groups: &[ARM64_BUILD, ARM64_RUN],
        postgres: true,
    },
];

/// What `cargo xtask test` needs.
pub fn test_needs() -> &'static Needs {
    &COMMANDS[0]
}
