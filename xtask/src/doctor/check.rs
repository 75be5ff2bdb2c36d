//! How doctor looks at this machine: what a check found ([`Status`]), the answers several checks
//! share ([`Probe`]), and the probes of tools, packages and AWS settings the table uses.

use std::path::{Path, PathBuf};

use crate::relative as rel;

/// What a piece's check found.
#[derive(Clone, Debug)]
pub struct Status {
    pub ok: bool,
    pub detail: String,
}

impl Status {
    pub fn ok(detail: impl Into<String>) -> Status {
        Status {
            ok: true,
            detail: detail.into(),
        }
    }

    pub fn missing(detail: impl Into<String>) -> Status {
        Status {
            ok: false,
            detail: detail.into(),
        }
    }

    pub fn found(ok: bool, yes: &str, no: &str) -> Status {
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
    pub fn sysroot(&mut self) -> Option<PathBuf> {
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

    pub fn docker(&mut self) -> bool {
        *self.docker.get_or_insert_with(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map(|rt| rt.block_on(crate::local::postgres::docker_answers()))
                .unwrap_or(false)
        })
    }
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

pub fn tool_version(program: &str, args: &[&str]) -> Status {
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

pub fn venv_or_path(name: &str) -> Status {
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
pub fn ziglang_dir(root: &Path) -> Option<PathBuf> {
    venv_package(root, "ziglang").filter(|d| d.join("zig").is_file())
}

/// `.venv/lib/python3.*/site-packages/<package>` when installed.
pub fn venv_package(root: &Path, package: &str) -> Option<PathBuf> {
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
}
