//! `cargo xtask` with the `docker` feature: the Docker PostgreSQL provider (testcontainers) compiled in.
//! The plain `xtask` builds this binary and hands a command over to it the first time Docker is needed.

fn main() -> std::process::ExitCode {
    xtask::main()
}
