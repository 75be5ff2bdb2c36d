//! `cargo xtask build`: cross-compiles `init-fn` for Lambda `provided.al2023` with cargo-zigbuild,
//! packages `target/lambda/init-fn/<arch>/bootstrap{,.zip}` and checks the glibc the binary needs.

use std::{
    fmt,
    io::Write,
    path::{Path, PathBuf},
};

use anyhow::{Context, bail};
use xshell::{Shell, cmd};

/// Said once before a build that starts from nothing (figures: xtask/README.md, `cargo xtask bench --first-run`).
pub const FIRST_BUILD_NOTE: &str = "first build of the bootstrap in this target dir: compiling its \
dependencies is a one-time cost (about 3 min on a 2-core machine); later builds take seconds";

/// Highest glibc symbol version `provided.al2023` offers (Amazon Linux 2023 ships glibc 2.34).
pub const MAX_GLIBC: (u32, u32) = (2, 34);

/// A Lambda instruction set architecture.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
pub enum Arch {
    /// Graviton (aarch64), the default: cheaper per GB-second
    Arm64,
    /// x86_64
    #[value(name = "x86_64")]
    X86_64,
}

impl Arch {
    /// The name Lambda and the `target/lambda` layout use.
    pub fn as_str(self) -> &'static str {
        match self {
            Arch::Arm64 => "arm64",
            Arch::X86_64 => "x86_64",
        }
    }

    /// The Rust target triple (without the glibc suffix cargo-zigbuild understands).
    pub fn rust_target(self) -> &'static str {
        match self {
            Arch::Arm64 => "aarch64-unknown-linux-gnu",
            Arch::X86_64 => "x86_64-unknown-linux-gnu",
        }
    }

    fn elf_machine(self) -> u16 {
        match self {
            Arch::Arm64 => 183,
            Arch::X86_64 => 62,
        }
    }

    /// Parse `arm64` / `x86_64` (also `aarch64`, `amd64`), as in `[package.metadata.lambda.deploy]`.
    pub fn parse(s: &str) -> anyhow::Result<Arch> {
        match s {
            "arm64" | "aarch64" => Ok(Arch::Arm64),
            "x86_64" | "amd64" | "x86-64" => Ok(Arch::X86_64),
            other => bail!("unknown architecture `{other}`: expected arm64 or x86_64"),
        }
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which architectures `cargo xtask build` produces.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ArchChoice {
    Arm64,
    #[value(name = "x86_64")]
    X86_64,
    All,
}

/// Cross-compile the release `bootstrap` for Lambda (provided.al2023) and zip it
#[derive(clap::Args)]
pub struct Build {
    /// Target architecture
    #[arg(long, value_enum, default_value = "arm64")]
    pub arch: ArchChoice,
}

impl Build {
    pub fn run(self, sh: &Shell) -> anyhow::Result<()> {
        let arches: &[Arch] = match self.arch {
            ArchChoice::Arm64 => &[Arch::Arm64],
            ArchChoice::X86_64 => &[Arch::X86_64],
            ArchChoice::All => &[Arch::Arm64, Arch::X86_64],
        };
        for &arch in arches {
            let bin = bootstrap(sh, arch)?;
            let zip = zip_path(arch);
            let glibc = match max_glibc(&std::fs::read(&bin)?)? {
                Some((ma, mi)) => format!("glibc {ma}.{mi}"),
                None => "static".to_string(),
            };
            println!(
                "{arch}: {} ({} bytes, needs {glibc}), {} ({} bytes)",
                rel(&bin),
                std::fs::metadata(&bin)?.len(),
                rel(&zip),
                std::fs::metadata(&zip)?.len(),
            );
        }
        Ok(())
    }
}

fn rel(p: &Path) -> String {
    p.strip_prefix(crate::project_root())
        .unwrap_or(p)
        .display()
        .to_string()
}

/// The cargo target directory (`CARGO_TARGET_DIR` or `<root>/target`).
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(d) => crate::project_root().join(d),
        None => crate::project_root().join("target"),
    }
}

/// `target/lambda/init-fn/<arch>/`
pub fn lambda_dir(arch: Arch) -> PathBuf {
    target_dir().join("lambda/init-fn").join(arch.as_str())
}

/// `target/lambda/init-fn/<arch>/bootstrap.zip`, what deploy uploads.
pub fn zip_path(arch: Arch) -> PathBuf {
    lambda_dir(arch).join("bootstrap.zip")
}

/// Builds `init-fn` in release for `arch` with cargo-zigbuild (glibc 2.34), writes
/// `target/lambda/init-fn/<arch>/bootstrap` and `bootstrap.zip`, checks the glibc symbol versions,
/// and returns the path of `bootstrap`.
pub fn bootstrap(sh: &Shell, arch: Arch) -> anyhow::Result<PathBuf> {
    let root = crate::project_root();
    let zigbuild = ensure_zigbuild(sh)?;
    ensure_rust_target(sh, arch)?;

    // cargo-zigbuild finds zig through `python3 -m ziglang`: the venv's python must come first.
    let venv_bin = root.join(".venv/bin");
    let path = std::env::join_paths(std::iter::once(venv_bin).chain(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    )))?;
    let _path = sh.push_env("PATH", path);
    let _dir = sh.push_dir(&root);
    let triple = format!("{}.{}.{}", arch.rust_target(), MAX_GLIBC.0, MAX_GLIBC.1);
    let built = target_dir()
        .join(arch.rust_target())
        .join("release/init-fn");
    if !built.exists() {
        eprintln!("{FIRST_BUILD_NOTE} (for {arch}: add a few minutes for fat LTO)");
    }
    // OpenSSL (PostgreSQL's TLS) built from source and linked statically: provided.al2023's own
    // libssl is no documented part of the runtime, and zig cross-links no host library.
    crate::without_package_env(cmd!(
        sh,
        "{zigbuild} zigbuild --release -p init-fn --features init-fn/vendored-openssl --target {triple}"
    ))
    .run()
    .with_context(|| format!("build: cargo zigbuild for {triple}"))?;

    let elf = std::fs::read(&built).with_context(|| format!("build: read {}", built.display()))?;
    check_elf(&elf, arch).with_context(|| format!("build: {}", built.display()))?;

    let dir = lambda_dir(arch);
    std::fs::create_dir_all(&dir)?;
    let bin = dir.join("bootstrap");
    std::fs::write(&bin, &elf)?;
    set_executable(&bin)?;
    write_zip(&zip_path(arch), &elf)?;
    Ok(bin)
}

#[cfg(unix)]
fn set_executable(p: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755))?;
    Ok(())
}

#[cfg(not(unix))]
fn set_executable(_: &Path) -> anyhow::Result<()> {
    Ok(())
}

/// Writes [`zip_bytes`] of `elf` to `path`.
pub fn write_zip(path: &Path, elf: &[u8]) -> anyhow::Result<()> {
    std::fs::write(path, zip_bytes(elf)?).with_context(|| format!("write {}", path.display()))
}

/// One entry `bootstrap`, mode 0755, fixed timestamp: the same binary gives the same zip, so an
/// unchanged re-deploy sees an unchanged CodeSha256.
pub fn zip_bytes(elf: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .compression_level(Some(9))
        .unix_permissions(0o755)
        .last_modified_time(zip::DateTime::default());
    zip.start_file("bootstrap", options)?;
    zip.write_all(elf)?;
    Ok(zip.finish()?.into_inner())
}

/// `.venv/bin/cargo-zigbuild`, or on PATH; installs it (with ziglang) into `<root>/.venv` from PyPI otherwise.
fn ensure_zigbuild(sh: &Shell) -> anyhow::Result<PathBuf> {
    let root = crate::project_root();
    let venv_zb = root.join(".venv/bin/cargo-zigbuild");
    if venv_zb.exists() {
        return Ok(venv_zb);
    }
    if cmd!(sh, "cargo-zigbuild --version")
        .quiet()
        .ignore_stdout()
        .ignore_stderr()
        .run()
        .is_ok()
    {
        return Ok(PathBuf::from("cargo-zigbuild"));
    }
    eprintln!("build: cargo-zigbuild not found; installing ziglang + cargo-zigbuild into .venv");
    let venv = root.join(".venv");
    let pip = venv.join("bin/pip");
    let install = || -> anyhow::Result<()> {
        if !pip.exists() {
            cmd!(sh, "python3 -m venv {venv}").run()?;
        }
        cmd!(sh, "{pip} install ziglang cargo-zigbuild").run()?;
        Ok(())
    };
    install().context(
        "build: cargo-zigbuild is missing and installing it failed; install it with \
         `python3 -m venv .venv && .venv/bin/pip install ziglang cargo-zigbuild`",
    )?;
    Ok(venv_zb)
}

fn ensure_rust_target(sh: &Shell, arch: Arch) -> anyhow::Result<()> {
    let target = arch.rust_target();
    let installed = cmd!(sh, "rustup target list --installed").quiet().read();
    match installed {
        Ok(list) if list.lines().any(|l| l.trim() == target) => Ok(()),
        Ok(_) => cmd!(sh, "rustup target add {target}")
            .run()
            .with_context(|| format!("build: rustup target add {target}")),
        // No rustup: let cargo say whether the target's std is there.
        Err(_) => Ok(()),
    }
}

/// Checks the ELF is for `arch` and needs glibc ≤ 2.34 (or is static).
pub fn check_elf(elf: &[u8], arch: Arch) -> anyhow::Result<()> {
    let machine = Elf::parse(elf)?.machine;
    if machine != arch.elf_machine() {
        bail!(
            "ELF machine {machine} is not {arch} ({})",
            arch.elf_machine()
        );
    }
    if let Some((ma, mi)) = max_glibc(elf)?
        && (ma, mi) > MAX_GLIBC
    {
        bail!(
            "the binary needs glibc {ma}.{mi} but provided.al2023 has {}.{}: build with \
             cargo zigbuild --target <triple>.{}.{}",
            MAX_GLIBC.0,
            MAX_GLIBC.1,
            MAX_GLIBC.0,
            MAX_GLIBC.1
        );
    }
    Ok(())
}

/// The highest `GLIBC_x.y` version the ELF's `.gnu.version_r` requires; `None` for a static binary.
pub fn max_glibc(elf: &[u8]) -> anyhow::Result<Option<(u32, u32)>> {
    let elf = Elf::parse(elf)?;
    let mut max = None;
    for name in elf.needed_versions()? {
        if let Some(v) = name.strip_prefix("GLIBC_") {
            let mut it = v.split('.').map(|n| n.parse::<u32>().unwrap_or(0));
            let ver = (it.next().unwrap_or(0), it.next().unwrap_or(0));
            max = max.max(Some(ver));
        }
    }
    Ok(max)
}

/// Just enough of ELF64 little-endian to read the version-needs section.
struct Elf<'a> {
    data: &'a [u8],
    machine: u16,
    sections: Vec<Section>,
}

#[derive(Clone, Copy)]
struct Section {
    kind: u32,
    offset: usize,
    size: usize,
    link: usize,
}

const SHT_GNU_VERNEED: u32 = 0x6fff_fffe;

impl<'a> Elf<'a> {
    fn parse(data: &'a [u8]) -> anyhow::Result<Elf<'a>> {
        if data.len() < 64 || &data[..4] != b"\x7fELF" {
            bail!("not an ELF file");
        }
        if data[4] != 2 || data[5] != 1 {
            bail!("not a 64-bit little-endian ELF");
        }
        let machine = u16_at(data, 18)?;
        let shoff = u64_at(data, 0x28)? as usize;
        let shentsize = u16_at(data, 0x3a)? as usize;
        let shnum = u16_at(data, 0x3c)? as usize;
        let mut sections = Vec::with_capacity(shnum);
        for i in 0..shnum {
            let h = shoff + i * shentsize;
            sections.push(Section {
                kind: u32_at(data, h + 4)?,
                offset: u64_at(data, h + 0x18)? as usize,
                size: u64_at(data, h + 0x20)? as usize,
                link: u32_at(data, h + 0x28)? as usize,
            });
        }
        Ok(Elf {
            data,
            machine,
            sections,
        })
    }

    /// Version names from every `Vernaux` of every `Verneed` entry.
    fn needed_versions(&self) -> anyhow::Result<Vec<String>> {
        let mut names = Vec::new();
        for s in self.sections.iter().filter(|s| s.kind == SHT_GNU_VERNEED) {
            let strtab = self
                .sections
                .get(s.link)
                .context("ELF: verneed links to a missing string table")?;
            let mut at = s.offset;
            loop {
                let cnt = u16_at(self.data, at + 2)? as usize;
                let aux = u32_at(self.data, at + 8)? as usize;
                let next = u32_at(self.data, at + 12)? as usize;
                let mut a = at + aux;
                for _ in 0..cnt {
                    let name = u32_at(self.data, a + 8)? as usize;
                    names.push(self.cstr(strtab.offset + name)?);
                    let anext = u32_at(self.data, a + 12)? as usize;
                    if anext == 0 {
                        break;
                    }
                    a += anext;
                }
                if next == 0 || at + next >= s.offset + s.size {
                    break;
                }
                at += next;
            }
        }
        Ok(names)
    }

    fn cstr(&self, at: usize) -> anyhow::Result<String> {
        let rest = self.data.get(at..).context("ELF: string out of range")?;
        let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
        Ok(String::from_utf8_lossy(&rest[..end]).into_owned())
    }
}

fn bytes<const N: usize>(d: &[u8], at: usize) -> anyhow::Result<[u8; N]> {
    d.get(at..at + N)
        .and_then(|b| b.try_into().ok())
        .context("ELF: truncated")
}
fn u16_at(d: &[u8], at: usize) -> anyhow::Result<u16> {
    Ok(u16::from_le_bytes(bytes(d, at)?))
}
fn u32_at(d: &[u8], at: usize) -> anyhow::Result<u32> {
    Ok(u32::from_le_bytes(bytes(d, at)?))
}
fn u64_at(d: &[u8], at: usize) -> anyhow::Result<u64> {
    Ok(u64::from_le_bytes(bytes(d, at)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(all(target_os = "linux", target_arch = "x86_64", target_env = "gnu"))]
    #[test]
    fn reads_glibc_versions_of_a_host_binary() {
        // The test binary itself links glibc dynamically: its max version matches readelf's view.
        let exe = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        let max = max_glibc(&exe).unwrap().expect("dynamically linked");
        assert!(max >= (2, 2), "{max:?}");
        check_elf(&exe, Arch::X86_64).ok();
        assert!(check_elf(&exe, Arch::Arm64).is_err());
    }

    #[test]
    fn rejects_non_elf() {
        assert!(max_glibc(b"#!/bin/sh\n").is_err());
    }

    #[test]
    fn zip_has_one_executable_bootstrap_and_is_reproducible() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.zip"), dir.path().join("b.zip"));
        write_zip(&a, b"\x7fELF fake").unwrap();
        write_zip(&b, b"\x7fELF fake").unwrap();
        assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
        let mut z = zip::ZipArchive::new(std::fs::File::open(&a).unwrap()).unwrap();
        assert_eq!(z.len(), 1);
        let f = z.by_index(0).unwrap();
        assert_eq!(f.name(), "bootstrap");
        assert_eq!(f.unix_mode().unwrap() & 0o777, 0o755);
    }
}
