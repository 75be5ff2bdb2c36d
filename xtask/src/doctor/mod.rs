//! `cargo xtask doctor`: for each command, what it needs from this machine, whether it is there, and
//! the exact command that fixes each missing piece. `cargo xtask test` runs [`setup`] over the same
//! list before it compiles anything: it installs what it can and otherwise stops with this report.
//!
//! To teach the project a new tool: add a [`Piece`] and its row in [`Piece::spec`] (name, install,
//! check), and list it in the [`COMMANDS`] entries that need it. Nothing else installs anything.

mod check;
mod install;
mod needs;
mod piece;
mod report;

use anyhow::bail;
use xshell::Shell;

pub use install::fixes;
pub use needs::{COMMANDS, Needs, test_needs};
pub use piece::{BUSYBOX, GOSU, Install, Piece};
pub use report::Report;
use report::names;

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
            install_missing(sh, test_needs());
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

/// Installs what `needs` lacks: rustup components and targets and the `.venv` tools always; Debian
/// packages and the shared CI scripts when running as root with apt-get. Then checks again and, if
/// anything is still missing, prints the doctor's report for `needs` and fails.
pub fn setup(sh: &Shell, needs: &Needs) -> anyhow::Result<()> {
    install_missing(sh, needs);
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

fn install_missing(sh: &Shell, needs: &Needs) {
    let missing = Report::probe().missing_for(needs);
    if missing.is_empty() {
        eprintln!("setup: everything `{}` needs is present", needs.command);
        return;
    }
    eprintln!("setup: installing {}", names(&missing));
    install::install(sh, &missing);
}
