//! The locks of `ALTER TABLE`'s actions (PostgreSQL's "Explicit Locking" table and the `ALTER TABLE`
//! page), one branch per action kind; an action it does not know makes the statement `lock unknown`.
//! A child of `plan` (loaded by path so `cargo xtask lint` compiles it too), std only.

use super::{
    Effect, Link, LockMode, On,
    words::{name, references, skip},
};

/// The locks of `ALTER TABLE table <rest>`: per comma-separated action, `None` for an action plan
/// does not classify.
pub(super) fn alter_table(table: &str, rest: &[&str]) -> Option<Effect> {
    use LockMode::*;
    let mut e = Effect::default();
    let mut depth = 0i32;
    let actions = rest.split(|w| {
        depth += match *w {
            "(" => 1,
            ")" => -1,
            _ => 0,
        };
        depth == 0 && *w == ","
    });
    let on = || On::Table(table.to_string());
    for a in actions {
        let has = |seq: &[&str]| a.windows(seq.len()).any(|x| x == seq);
        let first = a.first().copied().unwrap_or("");
        let column_op = first == "alter"
            || (first == "add" && !has(&["constraint"]) && !is_table_constraint(a));
        let mode = if has(&["validate", "constraint"]) {
            let constraint = name(a.get(2).copied().unwrap_or(""));
            e.link(
                RowShare,
                Link::ReferencedByConstraint {
                    table: table.to_string(),
                    constraint,
                },
            );
            ShareUpdateExclusive
        } else if (first == "alter"
            && (has(&["set", "statistics"]) || has(&["set", "("]) || has(&["reset", "("])))
            || (matches!(first, "set" | "reset") && a.get(1) == Some(&"("))
            || has(&["cluster", "on"])
            || has(&["set", "without", "cluster"])
        {
            // Column statistics and options, storage parameters, the clustering index.
            ShareUpdateExclusive
        } else if first == "add" && has(&["foreign", "key"]) {
            for r in references(a) {
                e.add(ShareRowExclusive, On::Table(r));
            }
            ShareRowExclusive
        } else if matches!(first, "enable" | "disable") && has(&["trigger"]) {
            ShareRowExclusive
        } else if first == "attach" && a.get(1) == Some(&"partition") {
            e.add(
                AccessExclusive,
                On::Table(name(a.get(2).copied().unwrap_or(""))),
            );
            ShareUpdateExclusive
        } else if first == "detach" && a.get(1) == Some(&"partition") {
            let concurrently = has(&["concurrently"]);
            let mode = if concurrently {
                ShareUpdateExclusive
            } else {
                AccessExclusive
            };
            e.add(mode, On::Table(name(a.get(2).copied().unwrap_or(""))));
            mode
        } else if first == "drop" && a.get(1) == Some(&"constraint") {
            let i = skip(a, 2, &["if", "exists"]);
            let constraint = name(a.get(i).copied().unwrap_or(""));
            e.link(
                AccessExclusive,
                Link::ReferencedByConstraint {
                    table: table.to_string(),
                    constraint,
                },
            );
            AccessExclusive
        } else if column_op
            || first == "add"
            || first == "drop"
            || first == "rename"
            || first == "owner"
            || has(&["row", "level", "security"])
            || (first == "set"
                && matches!(
                    a.get(1),
                    Some(&"logged" | &"unlogged" | &"schema" | &"tablespace")
                ))
            || (first == "replica" && a.get(1) == Some(&"identity"))
            || (matches!(first, "enable" | "disable") && has(&["rule"]))
        {
            for r in references(a) {
                e.add(ShareRowExclusive, On::Table(r));
            }
            AccessExclusive
        } else {
            return None;
        };
        e.add(mode, on());
    }
    Some(e)
}

/// `ADD PRIMARY KEY (…)`, `ADD UNIQUE …`, `ADD CHECK (…)`, `ADD EXCLUDE …`, `ADD FOREIGN KEY …`.
fn is_table_constraint(action: &[&str]) -> bool {
    matches!(
        action.get(1),
        Some(&"primary" | &"unique" | &"check" | &"exclude" | &"foreign")
    )
}
