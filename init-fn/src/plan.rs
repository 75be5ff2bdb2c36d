//! What a migration's statements do to existing tables: the table lock each statement kind takes
//! (PostgreSQL's "Explicit Locking" table). Statements come from `sql::split`. Std only, so
//! `cargo xtask lint` compiles this same file without linking the function's dependencies.

use std::fmt;

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

/// A lock a statement takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lock {
    pub mode: LockMode,
    pub on: On,
}

/// What a statement does, as far as locks and created tables go.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Effect {
    /// `CREATE TABLE name`.
    pub creates_table: Option<String>,
    /// Locks on other relations than the one it creates, strongest per relation.
    pub locks: Vec<Lock>,
}

/// Classifies one statement (comments already removed) by its kind.
pub fn classify(statement: &str) -> Effect {
    let t = tokens(statement);
    let w: Vec<&str> = t.iter().map(String::as_str).collect();
    let mut effect = Effect::default();
    let at = |i: usize| w.get(i).copied().unwrap_or("");
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
                "table" => {
                    i = skip(&w, i + 1, &["if", "not", "exists"]);
                    effect.creates_table = Some(name(at(i)));
                    for r in references(&w) {
                        effect.add(LockMode::ShareRowExclusive, On::Table(r));
                    }
                }
                "index" => {
                    let concurrently = at(i + 1) == "concurrently";
                    if let Some(table) = after(&w, "on") {
                        let mode = if concurrently {
                            LockMode::ShareUpdateExclusive
                        } else {
                            LockMode::Share
                        };
                        effect.add(mode, On::Table(table));
                    }
                }
                "trigger" | "constraint" => {
                    if let Some(table) = after(&w, "on") {
                        effect.add(LockMode::ShareRowExclusive, On::Table(table));
                    }
                }
                "policy" | "rule" => {
                    if let Some(table) = after(&w, "on") {
                        effect.add(LockMode::AccessExclusive, On::Table(table));
                    }
                }
                _ => {}
            }
        }
        ("alter", "table") => {
            let i = skip(&w, 2, &["if", "exists"]);
            let i = skip(&w, i, &["only"]);
            let table = name(at(i));
            let rest = &w[(i + 1).min(w.len())..];
            effect.add(alter_table_mode(rest), On::Table(table));
            for r in references(rest) {
                effect.add(LockMode::ShareRowExclusive, On::Table(r));
            }
        }
        ("drop", "table") => {
            let i = skip(&w, 2, &["if", "exists"]);
            for n in w[i.min(w.len())..]
                .iter()
                .take_while(|x| !matches!(**x, "cascade" | "restrict"))
                .filter(|x| **x != ",")
            {
                effect.add(LockMode::AccessExclusive, On::Table(name(n)));
            }
        }
        ("drop", "index") => {
            let concurrently = at(2) == "concurrently";
            let i = skip(&w, if concurrently { 3 } else { 2 }, &["if", "exists"]);
            let mode = if concurrently {
                LockMode::ShareUpdateExclusive
            } else {
                LockMode::AccessExclusive
            };
            if !at(i).is_empty() {
                effect.add(mode, On::TableOfIndex(name(at(i))));
            }
        }
        ("drop", "trigger") | ("drop", "policy") | ("drop", "rule") => {
            if let Some(table) = after(&w, "on") {
                effect.add(LockMode::AccessExclusive, On::Table(table));
            }
        }
        ("truncate", _) => {
            let i = skip(&w, 1, &["table"]);
            let i = skip(&w, i, &["only"]);
            effect.add(LockMode::AccessExclusive, On::Table(name(at(i))));
        }
        ("insert", "into") => effect.add(LockMode::RowExclusive, On::Table(name(at(2)))),
        ("update", _) => {
            let i = skip(&w, 1, &["only"]);
            effect.add(LockMode::RowExclusive, On::Table(name(at(i))));
        }
        ("delete", "from") => {
            let i = skip(&w, 2, &["only"]);
            effect.add(LockMode::RowExclusive, On::Table(name(at(i))));
        }
        ("vacuum", _) | ("analyze", _) => {
            if let Some(last) = w.last().filter(|x| !matches!(**x, "vacuum" | "analyze")) {
                effect.add(LockMode::ShareUpdateExclusive, On::Table(name(last)));
            }
        }
        ("lock", _) => {
            let i = skip(&w, 1, &["table"]);
            let i = skip(&w, i, &["only"]);
            let mode = w
                .iter()
                .position(|x| *x == "in")
                .map(|p| w[p + 1..].join(" "))
                .map_or(LockMode::AccessExclusive, |m| lock_mode(&m));
            effect.add(mode, On::Table(name(at(i))));
        }
        _ => {}
    }
    effect
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
}

/// The lock of `ALTER TABLE t <rest>`: the strongest any of its comma-separated actions needs.
fn alter_table_mode(rest: &[&str]) -> LockMode {
    let mut mode = LockMode::AccessShare;
    let mut depth = 0i32;
    let actions = rest.split(|w| {
        depth += match *w {
            "(" => 1,
            ")" => -1,
            _ => 0,
        };
        depth == 0 && *w == ","
    });
    for action in actions {
        let has = |seq: &[&str]| action.windows(seq.len()).any(|x| x == seq);
        let m = if has(&["validate", "constraint"])
            || has(&["set", "statistics"])
            || has(&["cluster", "on"])
            || has(&["set", "without", "cluster"])
            || (action.first() == Some(&"set") && action.get(1) == Some(&"("))
            || (has(&["detach", "partition"]) && has(&["concurrently"]))
            || has(&["attach", "partition"])
        {
            LockMode::ShareUpdateExclusive
        } else if (has(&["add"]) && has(&["foreign", "key"]) && action.first() == Some(&"add"))
            || has(&["enable", "trigger"])
            || has(&["disable", "trigger"])
        {
            LockMode::ShareRowExclusive
        } else {
            LockMode::AccessExclusive
        };
        mode = mode.max(m);
    }
    mode
}

fn lock_mode(words: &str) -> LockMode {
    let words = words.trim_end_matches(" nowait").trim_end_matches(" mode");
    match words {
        "access share" => LockMode::AccessShare,
        "row share" => LockMode::RowShare,
        "row exclusive" => LockMode::RowExclusive,
        "share update exclusive" => LockMode::ShareUpdateExclusive,
        "share" => LockMode::Share,
        "share row exclusive" => LockMode::ShareRowExclusive,
        "exclusive" => LockMode::Exclusive,
        _ => LockMode::AccessExclusive,
    }
}

/// Lowercased words, with `(`, `)` and `,` as words of their own; quoted identifiers kept as written.
fn tokens(statement: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut word = String::new();
    let mut chars = statement.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                word.push('"');
                for q in chars.by_ref() {
                    word.push(q);
                    if q == '"' {
                        break;
                    }
                }
            }
            '\'' => {
                // String literals never name a table; keep a placeholder.
                for q in chars.by_ref() {
                    if q == '\'' {
                        break;
                    }
                }
                word.push_str("''");
            }
            '(' | ')' | ',' | ';' => {
                flush(&mut out, &mut word);
                out.push(c.to_string());
            }
            c if c.is_whitespace() => flush(&mut out, &mut word),
            c => word.extend(c.to_lowercase()),
        }
    }
    flush(&mut out, &mut word);
    out
}

fn flush(out: &mut Vec<String>, word: &mut String) {
    if !word.is_empty() {
        out.push(std::mem::take(word));
    }
}

/// Skips `seq` at `i` when it is there.
fn skip(w: &[&str], i: usize, seq: &[&str]) -> usize {
    if w.get(i..i + seq.len()) == Some(seq) {
        i + seq.len()
    } else {
        i
    }
}

/// The table named after the first `keyword` (e.g. `ON [ONLY] t`).
fn after(w: &[&str], keyword: &str) -> Option<String> {
    let p = w.iter().position(|x| *x == keyword)?;
    let i = skip(w, p + 1, &["only"]);
    w.get(i).map(|n| name(n))
}

/// Tables named by `REFERENCES t`.
fn references(w: &[&str]) -> Vec<String> {
    w.windows(2)
        .filter(|p| p[0] == "references")
        .map(|p| name(p[1]))
        .collect()
}

/// `public.t`, `"t"` → `t`.
pub fn name(n: &str) -> String {
    let n = n.strip_prefix("public.").unwrap_or(n);
    let n = n.strip_prefix("\"public\".").unwrap_or(n);
    n.trim_matches('"').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn locks(sql: &str) -> Vec<(String, String)> {
        classify(sql)
            .locks
            .into_iter()
            .map(|l| {
                let on = match l.on {
                    On::Table(t) => t,
                    On::TableOfIndex(i) => format!("table of {i}"),
                };
                (l.mode.as_str().to_string(), on)
            })
            .collect()
    }

    fn pair(mode: &str, on: &str) -> (String, String) {
        (mode.to_string(), on.to_string())
    }

    #[test]
    fn statement_kinds_take_the_documented_locks() {
        assert_eq!(
            locks("CREATE INDEX idx ON documents (status, upload_date)"),
            [pair("SHARE", "documents")]
        );
        assert_eq!(
            locks("CREATE INDEX CONCURRENTLY IF NOT EXISTS idx ON public.documents(status)"),
            [pair("SHARE UPDATE EXCLUSIVE", "documents")]
        );
        assert_eq!(
            locks("ALTER TABLE documents ADD COLUMN reviewed boolean NOT NULL DEFAULT false"),
            [pair("ACCESS EXCLUSIVE", "documents")]
        );
        assert_eq!(
            locks(
                "ALTER TABLE processing_logs ADD CONSTRAINT fk FOREIGN KEY (document_id) REFERENCES documents(id) NOT VALID"
            ),
            [
                pair("SHARE ROW EXCLUSIVE", "processing_logs"),
                pair("SHARE ROW EXCLUSIVE", "documents")
            ]
        );
        assert_eq!(
            locks("ALTER TABLE processing_logs VALIDATE CONSTRAINT fk"),
            [pair("SHARE UPDATE EXCLUSIVE", "processing_logs")]
        );
        assert_eq!(
            locks("ALTER TABLE documents ALTER COLUMN file_size TYPE bigint"),
            [pair("ACCESS EXCLUSIVE", "documents")]
        );
        assert_eq!(
            locks("DROP INDEX CONCURRENTLY IF EXISTS idx_documents_s3_key"),
            [pair(
                "SHARE UPDATE EXCLUSIVE",
                "table of idx_documents_s3_key"
            )]
        );
        assert_eq!(
            locks("DROP TABLE IF EXISTS a, b CASCADE"),
            [pair("ACCESS EXCLUSIVE", "a"), pair("ACCESS EXCLUSIVE", "b")]
        );
        assert_eq!(
            locks("UPDATE documents SET status = 'x;y' WHERE id = 1"),
            [pair("ROW EXCLUSIVE", "documents")]
        );
        assert_eq!(
            locks("LOCK TABLE documents IN SHARE ROW EXCLUSIVE MODE"),
            [pair("SHARE ROW EXCLUSIVE", "documents")]
        );
        let create = classify(
            "CREATE TABLE IF NOT EXISTS processing_logs (id SERIAL, document_id INTEGER REFERENCES documents(id))",
        );
        assert_eq!(create.creates_table.as_deref(), Some("processing_logs"));
        assert_eq!(
            locks("CREATE TABLE t (id int REFERENCES documents(id))"),
            [pair("SHARE ROW EXCLUSIVE", "documents")]
        );
        assert!(locks("SELECT 1").is_empty());
    }
}
