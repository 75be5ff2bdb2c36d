//! `cargo xtask` without the Docker provider compiled in (see [`xtask::main`]).

fn main() -> std::process::ExitCode {
    xtask::main()
}
