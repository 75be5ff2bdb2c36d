//! Getting missing pieces onto the machine: the installs grouped by how they are made (one rustup,
//! one pip, one apt call), printed as fixes or run by `setup`.

use std::path::{Path, PathBuf};

use xshell::{Shell, cmd};

use super::check::on_path;
use super::piece::{Install, Piece};
use crate::relative as rel;

/// The installs a list of missing pieces needs, grouped by how they are made.
#[derive(Default)]
struct Plan {
    components: Vec<&'static str>,
    targets: Vec<&'static str>,
    pip: Vec<&'static str>,
    apt: Vec<&'static str>,
    /// Pieces installed one by one (shared scripts, fetches, manual steps), in order.
    other: Vec<(Piece, Install)>,
}

impl Plan {
    fn of(missing: &[Piece]) -> Plan {
        let mut plan = Plan::default();
        for &piece in missing {
            match piece.install() {
                Install::RustupComponent(c) => plan.components.push(c),
                Install::RustupTarget(t) => plan.targets.push(t),
                Install::Pip(req) => plan.pip.push(req),
                Install::Apt(pkgs) => plan.apt.extend_from_slice(pkgs),
                other => plan.other.push((piece, other)),
            }
        }
        plan.apt.dedup();
        plan
    }
}

/// The commands that install `missing`, grouped: one rustup, one pip, one apt line.
pub fn fixes(missing: &[Piece]) -> Vec<String> {
    let plan = Plan::of(missing);
    let mut lines = Vec::new();
    if !plan.components.is_empty() {
        lines.push(format!(
            "* rustup component add {}",
            plan.components.join(" ")
        ));
    }
    if !plan.targets.is_empty() {
        lines.push(format!("* rustup target add {}", plan.targets.join(" ")));
    }
    if !plan.pip.is_empty() {
        let quoted: Vec<String> = plan.pip.iter().map(|r| format!("'{r}'")).collect();
        lines.push(format!(
            "* python3 -m venv .venv && .venv/bin/pip install {}",
            quoted.join(" ")
        ));
    }
    if !plan.apt.is_empty() {
        lines.push(format!("+ apt-get install -y {}", plan.apt.join(" ")));
    }
    for (piece, install) in plan.other {
        lines.push(match install {
            Install::SharedScript(script, args) => match shared_script(script) {
                Some(path) => format!("+ bash {} {}", rel(&path), args.join(" ")),
                None => manual_fix_for(piece).to_string(),
            },
            Install::Fetch(text) => format!("* {}: {text}", piece.name()),
            Install::Manual(text) => format!("  {}: {text}", piece.name()),
            _ => continue,
        });
    }
    lines
}

/// The fix for a shared-script piece on a machine without the shared CI directory.
fn manual_fix_for(piece: Piece) -> &'static str {
    match piece {
        Piece::DockerEngine => {
            "  Docker engine: install Docker and start it (Debian: apt-get install docker.io)"
        }
        Piece::PostgresImage => "  image: docker pull postgres:17",
        _ => "  see README",
    }
}

/// Installs `missing`: rustup components and targets and the `.venv` tools always; Debian packages
/// and the shared CI scripts when running as root with apt-get. Failures are reported and left to
/// the caller's second check, which names what is still missing.
pub fn install(sh: &Shell, missing: &[Piece]) {
    let plan = Plan::of(missing);
    let root = crate::project_root();
    let admin = is_root() && on_path("apt-get").is_some();
    let attempt = |what: &str, result: anyhow::Result<()>| {
        if let Err(err) = result {
            eprintln!(
                "setup: {what} failed: {}",
                crate::error::chain(err.as_ref())
            );
        }
    };
    if admin && !plan.apt.is_empty() {
        attempt("apt-get install", apt_install(sh, &plan.apt));
    }
    if admin {
        for (_, install) in &plan.other {
            if let Install::SharedScript(script, args) = install
                && let Some(path) = shared_script(script)
            {
                let args = args.to_vec();
                attempt(
                    script,
                    cmd!(sh, "bash {path} {args...}").run().map_err(Into::into),
                );
            }
        }
    }
    let (components, targets) = (&plan.components, &plan.targets);
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
    if !plan.pip.is_empty() {
        attempt("pip install into .venv", pip_install(sh, &root, &plan.pip));
    }
    // After pip: the RIE fetch uses the venv's pip.
    for (piece, install) in &plan.other {
        if let Install::Fetch(_) = install
            && *piece == Piece::Rie
        {
            attempt(
                "fetch aws-lambda-rie",
                crate::local::rie::ensure_rie().map(drop),
            );
        }
    }
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

#[cfg(unix)]
fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

#[cfg(not(unix))]
fn is_root() -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::Arch;
    use Piece::*;

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
}
