//! What a migration's statements do to existing tables: the table lock each statement kind takes
//! (PostgreSQL's "Explicit Locking" table). Statements come from `sql::split`. Std only, so
//! `cargo xtask lint` compiles this same file without linking the function's dependencies.

use std::fmt;

#[path = "alter_table.rs"]
mod alter_table;
#[path = "words.rs"]
mod words;

use alter_table::alter_table;
pub use words::name;
use words::{after, assigned, list, references, skip, tokens};

/// Table lock modes, weakest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LockMode {
    AccessShare,
    RowShare,
    RowExclusive,
    ShareUpdateExclusive,
    Share,
    ShareRowExclusive,
    Exclusive,
    AccessExclusive,
}

impl LockMode {
    pub fn as_str(self) -> &'static str {
        match self {
            LockMode::AccessShare => "ACCESS SHARE",
            LockMode::RowShare => "ROW SHARE",
            LockMode::RowExclusive => "ROW EXCLUSIVE",
            LockMode::ShareUpdateExclusive => "SHARE UPDATE EXCLUSIVE",
            LockMode::Share => "SHARE",
            LockMode::ShareRowExclusive => "SHARE ROW EXCLUSIVE",
            LockMode::Exclusive => "EXCLUSIVE",
            LockMode::AccessExclusive => "ACCESS EXCLUSIVE",
        }
    }

    /// The mode `pg_locks.mode` names (`AccessExclusiveLock`).
    pub fn from_pg_locks(mode: &str) -> Option<LockMode> {
        ALL.into_iter().find(|m| {
            m.as_str()
                .replace(' ', "")
                .eq_ignore_ascii_case(mode.trim_end_matches("Lock"))
        })
    }

    /// What the lock stops others from doing while it is held.
    pub fn blocks(self) -> &'static str {
        match self {
            LockMode::AccessShare | LockMode::RowShare => "nothing but DDL",
            LockMode::RowExclusive => "DDL and index builds",
            LockMode::ShareUpdateExclusive => "DDL and VACUUM, not reads or writes",
            LockMode::Share | LockMode::ShareRowExclusive => "writes",
            LockMode::Exclusive => "writes and most reads",
            LockMode::AccessExclusive => "reads and writes",
        }
    }
}

const ALL: [LockMode; 8] = [
    LockMode::AccessShare,
    LockMode::RowShare,
    LockMode::RowExclusive,
    LockMode::ShareUpdateExclusive,
    LockMode::Share,
    LockMode::ShareRowExclusive,
    LockMode::Exclusive,
    LockMode::AccessExclusive,
];

impl fmt::Display for LockMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The relation a lock is taken on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum On {
    Table(String),
    /// `DROP INDEX name`: the lock is on the table the index belongs to, known only from the catalog.
    TableOfIndex(String),
}

/// A lock a statement takes on a relation it names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lock {
    pub mode: LockMode,
    pub on: On,
}

/// Tables a statement locks without naming them: found through the catalog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Link {
    /// The tables the foreign keys of this table reference.
    ReferencedBy(String),
    /// The tables whose foreign keys reference this table.
    Referencing(String),
    /// The table a constraint of `table` references, when it is a foreign key.
    ReferencedByConstraint { table: String, constraint: String },
    /// The tables a (materialized) view reads.
    ReadBy(String),
    /// The row checks and actions of foreign keys when rows of `table` change: `ROW SHARE` on a
    /// checked table, `ROW EXCLUSIVE` where an `ON DELETE|UPDATE CASCADE|SET …` action writes.
    RowChanges { table: String, change: RowChange },
}

/// What happens to rows, for foreign-key row checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RowChange {
    Insert,
    /// The columns `SET` assigns.
    Update(Vec<String>),
    Delete,
}

/// A lock on tables found through the catalog (`mode` is unused for [`Link::RowChanges`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Linked {
    pub mode: LockMode,
    pub via: Link,
}

/// What a statement does, as far as locks and created tables go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Effect {
    /// `CREATE TABLE name`.
    pub creates_table: Option<String>,
    /// Locks on other relations than the one it creates, strongest per relation.
    pub locks: Vec<Lock>,
    /// Locks on tables the catalog links to those.
    pub linked: Vec<Linked>,
    /// `false`: a statement kind plan does not classify; its locks are unknown, not none.
    pub known: bool,
}

impl Default for Effect {
    fn default() -> Effect {
        Effect {
            creates_table: None,
            locks: Vec::new(),
            linked: Vec::new(),
            known: true,
        }
    }
}

/// Classifies one statement (comments already removed) by its kind; checked against `pg_locks` by
/// `tests/tests/it/locks.rs`.
pub fn classify(statement: &str) -> Effect {
    use LockMode::*;
    let t = tokens(statement);
    let w: Vec<&str> = t.iter().map(String::as_str).collect();
    let mut e = Effect::default();
    let at = |i: usize| w.get(i).copied().unwrap_or("");
    let has = |seq: &[&str]| w.windows(seq.len()).any(|x| x == seq);
    match (at(0), at(1)) {
        ("create", _) => {
            let mut i = 1;
            while matches!(
                at(i),
                "unique" | "or" | "replace" | "temp" | "temporary" | "unlogged"
            ) {
                i += 1;
            }
            match at(i) {
                // `CREATE TABLE … AS query`: what the query reads is not in its words.
                "table" if words::at_top_level(&w, "as") => e.known = false,
                "table" => {
                    i = skip(&w, i + 1, &["if", "not", "exists"]);
                    e.creates_table = Some(name(at(i)));
                    for r in references(&w) {
                        e.add(ShareRowExclusive, On::Table(r));
                    }
                    if let Some(parent) = after(&w, &["partition", "of"]) {
                        e.add(AccessExclusive, On::Table(parent));
                    }
                    if let Some(parent) = after(&w, &["inherits", "("]) {
                        e.add(ShareUpdateExclusive, On::Table(parent));
                    }
                    if let Some(source) = after(&w, &["like"]) {
                        e.add(AccessShare, On::Table(source));
                    }
                }
                "index" => {
                    let mode = if at(i + 1) == "concurrently" {
                        ShareUpdateExclusive
                    } else {
                        Share
                    };
                    e.add_opt(mode, after(&w, &["on"]));
                }
                "trigger" | "constraint" => e.add_opt(ShareRowExclusive, after(&w, &["on"])),
                "policy" => e.add_opt(AccessExclusive, after(&w, &["on"])),
                "rule" => e.add_opt(AccessExclusive, after(&w, &["to"])),
                "function" | "procedure" => e.known = has(&["plpgsql"]) && !has(&["atomic"]),
                "type" | "domain" | "schema" => {}
                "sequence" => e.known = !has(&["owned"]),
                _ => e.known = false,
            }
        }
        ("alter", "table") => {
            let i = skip(&w, 2, &["if", "exists"]);
            let i = skip(&w, i, &["only"]);
            let table = name(at(i));
            let rest = &w[(i + 1).min(w.len())..];
            match alter_table(&table, rest) {
                Some(mut actions) => {
                    e.locks.append(&mut actions.locks);
                    e.linked.append(&mut actions.linked);
                }
                None => e.known = false,
            }
        }
        ("drop", "table") => {
            // CASCADE drops whatever depends on the table (views, foreign keys): not from its words.
            e.known = !has(&["cascade"]);
            for t in list(&w, skip(&w, 2, &["if", "exists"])) {
                e.add(AccessExclusive, On::Table(t.clone()));
                e.link(AccessExclusive, Link::ReferencedBy(t));
            }
        }
        ("drop", "index") => {
            let concurrently = at(2) == "concurrently";
            let i = skip(&w, if concurrently { 3 } else { 2 }, &["if", "exists"]);
            let mode = if concurrently {
                ShareUpdateExclusive
            } else {
                AccessExclusive
            };
            for i in list(&w, i) {
                e.add(mode, On::TableOfIndex(i));
            }
        }
        ("drop", "view") | ("drop", "materialized") => {
            let i = skip(&w, if at(1) == "view" { 2 } else { 3 }, &["if", "exists"]);
            e.known = !has(&["cascade"]);
            for v in list(&w, i) {
                e.add(AccessExclusive, On::Table(v));
            }
        }
        ("drop", "trigger") | ("drop", "policy") | ("drop", "rule") => {
            e.add_opt(AccessExclusive, after(&w, &["on"]))
        }
        ("drop", "function" | "procedure" | "type" | "domain" | "sequence" | "schema") => {
            e.known = !has(&["cascade"])
        }
        ("truncate", _) => {
            let i = skip(&w, skip(&w, 1, &["table"]), &["only"]);
            for t in list(&w, i) {
                e.add(AccessExclusive, On::Table(t.clone()));
                if has(&["cascade"]) {
                    e.link(AccessExclusive, Link::Referencing(t));
                }
            }
        }
        ("insert", "into") => {
            let table = name(at(2));
            e.add(RowExclusive, On::Table(table.clone()));
            e.rows(table, RowChange::Insert);
            e.reads(&w, 0);
        }
        ("update", _) => {
            let table = name(at(skip(&w, 1, &["only"])));
            e.add(RowExclusive, On::Table(table.clone()));
            e.rows(table, RowChange::Update(assigned(&w)));
            e.reads(&w, 0);
        }
        ("delete", "from") => {
            let table = name(at(skip(&w, 2, &["only"])));
            e.add(RowExclusive, On::Table(table.clone()));
            e.rows(table, RowChange::Delete);
            e.reads(&w, 1);
        }
        ("vacuum", _) | ("analyze", _) => {
            let mode = if has(&["full"]) {
                AccessExclusive
            } else {
                ShareUpdateExclusive
            };
            let mut i = 1;
            while matches!(at(i), "full" | "freeze" | "verbose" | "analyze") {
                i += 1;
            }
            if at(i) == "(" {
                i += w[i..].iter().position(|x| *x == ")").unwrap_or(0) + 1;
            }
            let tables = list(&w, i);
            e.known = !tables.is_empty();
            for t in tables {
                e.add(mode, On::Table(t));
            }
        }
        ("lock", _) => {
            let i = skip(&w, skip(&w, 1, &["table"]), &["only"]);
            let mode = w
                .iter()
                .position(|x| *x == "in")
                .map(|p| w[p + 1..].join(" "))
                .map_or(Some(AccessExclusive), |m| lock_mode(&m));
            match mode {
                Some(mode) => list(&w, i)
                    .into_iter()
                    .for_each(|t| e.add(mode, On::Table(t))),
                None => e.known = false,
            }
        }
        ("comment", "on") => match at(2) {
            "table" | "view" => e.add(ShareUpdateExclusive, On::Table(name(at(3)))),
            "materialized" => e.add(ShareUpdateExclusive, On::Table(name(at(4)))),
            "column" => {
                let target = at(3).trim_start_matches("public.");
                let table = target.rsplit_once('.').map_or("", |(t, _)| t);
                e.add(ShareUpdateExclusive, On::Table(name(table)));
            }
            // The object is locked, its table only opened for reading (`… ON t`, the second ON).
            "constraint" | "trigger" => {
                let table = w.iter().rposition(|x| *x == "on").filter(|p| *p > 1);
                e.add_opt(AccessShare, table.and_then(|p| after(&w[p..], &["on"])))
            }
            "function" | "procedure" | "type" | "domain" | "schema" | "extension" | "index"
            | "sequence" => {}
            _ => e.known = false,
        },
        ("grant", _) | ("revoke", _) => {}
        ("refresh", "materialized") => {
            let concurrently = at(3) == "concurrently";
            let view = name(at(if concurrently { 4 } else { 3 }));
            e.add(
                if concurrently {
                    Exclusive
                } else {
                    AccessExclusive
                },
                On::Table(view.clone()),
            );
            e.link(AccessShare, Link::ReadBy(view));
        }
        ("reindex", _) => {
            let concurrently = has(&["concurrently"]);
            let mode = if concurrently {
                ShareUpdateExclusive
            } else {
                Share
            };
            let target = name(w.last().copied().unwrap_or(""));
            match at(1) {
                "table" => e.add(mode, On::Table(target)),
                "index" => e.add(mode, On::TableOfIndex(target)),
                _ => e.known = false,
            }
        }
        ("cluster", _) if w.len() > 1 => e.add(AccessExclusive, On::Table(name(at(1)))),
        ("set", _) | ("reset", _) | ("notify", _) | ("listen", _) => {}
        _ => e.known = false,
    }
    e
}

impl Effect {
    fn add(&mut self, mode: LockMode, on: On) {
        if matches!(&on, On::Table(t) | On::TableOfIndex(t) if t.is_empty()) {
            return;
        }
        match self.locks.iter_mut().find(|l| l.on == on) {
            Some(lock) => lock.mode = lock.mode.max(mode),
            None => self.locks.push(Lock { mode, on }),
        }
    }

    fn add_opt(&mut self, mode: LockMode, table: Option<String>) {
        match table {
            Some(t) => self.add(mode, On::Table(t)),
            None => self.known = false,
        }
    }

    fn link(&mut self, mode: LockMode, via: Link) {
        self.linked.push(Linked { mode, via });
    }

    fn rows(&mut self, table: String, change: RowChange) {
        self.link(LockMode::RowShare, Link::RowChanges { table, change });
    }

    /// `ACCESS SHARE` on what a DML statement reads: names after `FROM`, `JOIN`, `USING` (the first
    /// `skip_from` of them are its target); names that are no table are dropped by the catalog.
    fn reads(&mut self, w: &[&str], skip_from: usize) {
        let mut seen = 0;
        for pair in w.windows(2) {
            if matches!(pair[0], "from" | "join" | "using") && pair[1] != "(" {
                seen += 1;
                if seen > skip_from {
                    self.add(LockMode::AccessShare, On::Table(name(pair[1])));
                }
            }
        }
        if w.first() == Some(&"with") {
            self.known = false;
        }
    }
}

fn lock_mode(words: &str) -> Option<LockMode> {
    let words = words.trim_end_matches(" nowait").trim_end_matches(" mode");
    ALL.into_iter()
        .find(|m| m.as_str().eq_ignore_ascii_case(words))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_of_a_statement_name_its_tables_and_assignments() {
        let e =
            classify("UPDATE public.documents SET status = 'x;y', (a, b) = (1, 2) WHERE id = 1");
        assert_eq!(
            e.locks,
            [Lock {
                mode: LockMode::RowExclusive,
                on: On::Table("documents".into())
            }]
        );
        assert_eq!(
            e.linked[0].via,
            Link::RowChanges {
                table: "documents".into(),
                change: RowChange::Update(vec!["status".into(), "a".into(), "b".into()])
            }
        );
        assert!(!classify("CREATE VIEW v AS SELECT 1").known);
        assert!(!classify("DO $$ BEGIN END $$").known);
        assert!(classify("GRANT SELECT ON documents TO PUBLIC").known);
        assert_eq!(
            LockMode::from_pg_locks("ShareRowExclusiveLock"),
            Some(LockMode::ShareRowExclusive)
        );
        assert_eq!(
            LockMode::from_pg_locks("AccessShareLock"),
            Some(LockMode::AccessShare)
        );
    }
}
