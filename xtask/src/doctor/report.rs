//! Doctor's report: every piece any command needs, checked once; what each command lacks; the
//! table and the fixes as printed.

use std::collections::BTreeSet;

use super::check::{Probe, Status};
use super::install::fixes;
use super::needs::{COMMANDS, Needs};
use super::piece::Piece::{self, *};
use crate::local::postgres::DEFAULT_IMAGE;

/// Every piece any command needs, checked once.
pub struct Report {
    results: Vec<(Piece, Status)>,
}

impl Report {
    pub fn probe() -> Report {
        let mut probe = Probe::default();
        let pieces: BTreeSet<Piece> = COMMANDS
            .iter()
            .flat_map(|n| n.pieces().chain(n.postgres_pieces().iter().copied()))
            .collect();
        Report {
            results: pieces
                .into_iter()
                .map(|p| (p, p.check(&mut probe)))
                .collect(),
        }
    }

    fn status(&self, piece: Piece) -> Option<&Status> {
        self.results
            .iter()
            .find(|(p, _)| *p == piece)
            .map(|(_, s)| s)
    }

    fn has(&self, piece: Piece) -> bool {
        self.status(piece).is_some_and(|s| s.ok)
    }

    /// The pieces `needs` lacks (for a PostgreSQL server: Docker with the image, else the binaries).
    pub fn missing_for(&self, needs: &Needs) -> Vec<Piece> {
        let mut missing: Vec<Piece> = needs.pieces().filter(|p| !self.has(*p)).collect();
        if needs.postgres {
            let docker = self.has(DockerEngine) && self.has(PostgresImage);
            if !docker && !self.has(PostgresBinaries) {
                for &piece in needs.postgres_pieces() {
                    if !self.has(piece) && !missing.contains(&piece) {
                        missing.push(piece);
                    }
                }
            }
        }
        missing
    }

    /// The pieces table, one verdict per command, then the fixes for what `commands` lack.
    pub fn print(&self, commands: &[&Needs]) {
        println!("{:<8} {:<38} {:<30} needed by", "", "piece", "found");
        for (piece, status) in &self.results {
            let users: Vec<&str> = commands
                .iter()
                .filter(|n| n.pieces().any(|p| p == *piece))
                .map(|n| n.command)
                .collect();
            let alt = commands.iter().any(|n| n.postgres_pieces().contains(piece));
            if users.is_empty() && !alt {
                continue;
            }
            let mut by = users.join(", ");
            if alt {
                by.push_str(if by.is_empty() { "" } else { ", " });
                by.push_str("(a PostgreSQL server)");
            }
            println!(
                "{:<8} {:<38} {:<30} {by}",
                if status.ok { "ok" } else { "MISSING" },
                piece.name(),
                clip(&status.detail, 30),
            );
        }
        println!(
            "(a PostgreSQL server: the Docker engine with {DEFAULT_IMAGE}, else the local binaries)"
        );
        println!();
        let mut lacking = Vec::new();
        for needs in commands {
            let missing = self.missing_for(needs);
            let verdict = if missing.is_empty() {
                "ready".to_string()
            } else {
                format!("missing {}", names(&missing))
            };
            println!("  {:<26} {verdict}", needs.command);
            lacking.extend(missing);
        }
        lacking.sort();
        lacking.dedup();
        if !lacking.is_empty() {
            println!(
                "\nto fix (`cargo xtask test` runs the ones marked * itself; + when root with apt):"
            );
            for line in fixes(&lacking) {
                println!("  {line}");
            }
        }
    }
}

/// `a, b, c` by piece name.
pub fn names(pieces: &[Piece]) -> String {
    pieces
        .iter()
        .map(|p| p.name())
        .collect::<Vec<_>>()
        .join(", ")
}

fn clip(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_string();
    }
    let mut s: String = text.chars().take(width - 1).collect();
    s.push('…');
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doctor::needs::test_needs;

    #[test]
    fn a_postgres_command_is_ready_with_either_provider() {
        let report = |docker: bool, binaries: bool| Report {
            results: vec![
                (DockerEngine, Status::found(docker, "", "")),
                (PostgresImage, Status::found(docker, "", "")),
                (PostgresBinaries, Status::found(binaries, "", "")),
                // `serve` builds the host bootstrap, which links the system libssl.
                (OpensslDev, Status::ok("")),
            ],
        };
        let serve = COMMANDS.iter().find(|n| n.command == "serve").unwrap();
        assert!(report(true, false).missing_for(serve).is_empty());
        assert!(report(false, true).missing_for(serve).is_empty());
        assert_eq!(
            report(false, false).missing_for(serve),
            [DockerEngine, PostgresImage, PostgresBinaries]
        );
        // `test` wants both providers: CI runs test-local on each.
        assert!(
            !report(true, false)
                .missing_for(test_needs())
                .contains(&DockerEngine)
        );
        assert!(
            report(true, false)
                .missing_for(test_needs())
                .contains(&PostgresBinaries)
        );
    }
}
