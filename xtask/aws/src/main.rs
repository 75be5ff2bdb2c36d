use std::process::ExitCode;

use clap::{Parser, Subcommand};
use xtask::project_root;

/// The AWS commands of `cargo xtask` (run through `cargo xtask deploy|invoke|clean|template|logs|run`).
#[derive(Parser)]
#[command(name = "cargo xtask", bin_name = "cargo xtask", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    Deploy(xtask_aws::deploy::Deploy),
    Invoke(xtask_aws::invoke::Invoke),
    Clean(xtask_aws::clean::Clean),
    Template(xtask_aws::template::Template),
    Logs(xtask_aws::logs::Logs),
    Run(xtask_aws::run::Run),
}

fn main() -> ExitCode {
    xtask::error::exit(run())
}

fn run() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let sh = xshell::Shell::new()?;
    sh.change_dir(project_root());
    match cli.command {
        Command::Deploy(cmd) => cmd.run(&sh),
        Command::Invoke(cmd) => cmd.run(&sh),
        Command::Clean(cmd) => cmd.run(&sh),
        Command::Template(cmd) => cmd.run(&sh),
        Command::Logs(cmd) => cmd.run(&sh),
        Command::Run(cmd) => cmd.run(&sh),
    }
}
