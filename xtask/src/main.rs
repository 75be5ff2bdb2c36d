use std::process::ExitCode;

use clap::{Parser, Subcommand};
use xtask::project_root;

/// Build, run locally, test, deploy, invoke and clean the `init-fn` Lambda.
#[derive(Parser)]
#[command(name = "cargo xtask", bin_name = "cargo xtask", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    Test(xtask::test::Test),
    TestLocal(xtask::test_local::TestLocal),
    Bench(xtask::bench::Bench),
    Build(xtask::build::Build),
    /// Deploy the function: discovery, preflight, least-privilege role, create or update (`--help` for flags)
    Deploy(xtask::aws_commands::Passthrough),
    /// Invoke the deployed function and show its report and log tail (`--help` for flags)
    Invoke(xtask::aws_commands::Passthrough),
    /// Remove the function and its role (`--help` for flags)
    Clean(xtask::aws_commands::Passthrough),
    /// Write a CloudFormation or SAM template of exactly what deploy creates (`--help` for flags)
    Template(xtask::aws_commands::Passthrough),
    /// Show the function's log lines by invocation, failures marked; --follow (`--help` for flags)
    Logs(xtask::aws_commands::Passthrough),
    /// Deploy, invoke once, then clean up unless --keep, as the original script (`--help` for flags)
    Run(xtask::aws_commands::Passthrough),
    Serve(xtask::serve::Serve),
    Doctor(xtask::doctor::Doctor),
    Lint(xtask::lint::Lint),
    Migrate(xtask::migrate::Migrate),
    Schema(xtask::schema::Schema),
}

fn main() -> ExitCode {
    xtask::error::exit(run())
}

fn run() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let sh = xshell::Shell::new()?;
    sh.change_dir(project_root());
    match cli.command {
        Command::Test(cmd) => cmd.run(&sh),
        Command::TestLocal(cmd) => cmd.run(&sh),
        Command::Bench(cmd) => cmd.run(&sh),
        Command::Build(cmd) => cmd.run(&sh),
        Command::Deploy(cmd) => cmd.run(&sh, "deploy"),
        Command::Invoke(cmd) => cmd.run(&sh, "invoke"),
        Command::Clean(cmd) => cmd.run(&sh, "clean"),
        Command::Template(cmd) => cmd.run(&sh, "template"),
        Command::Logs(cmd) => cmd.run(&sh, "logs"),
        Command::Run(cmd) => cmd.run(&sh, "run"),
        Command::Serve(cmd) => cmd.run(&sh),
        Command::Doctor(cmd) => cmd.run(&sh),
        Command::Lint(cmd) => cmd.run(&sh),
        Command::Migrate(cmd) => cmd.run(&sh),
        Command::Schema(cmd) => cmd.run(&sh),
    }
}
