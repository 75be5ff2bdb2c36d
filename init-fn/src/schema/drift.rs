//! Drift: the live schema compared, object by object, with the one the migrations produce
//! (`sql/schema.txt`, embedded at build time). A pure comparison of two [`Schema`]s, and the one-line
//! summary `verify` fails with.

use serde::Serialize;

use crate::schema::model::Schema;

/// `sql/schema.txt` as built in (`None`: built from `INIT_FN_SQL_DIR` without one).
const EMBEDDED: Option<&str> = include!(concat!(env!("OUT_DIR"), "/schema.rs"));

/// The file `cargo xtask schema` writes, as the messages name it.
pub const SCHEMA_FILE: &str = "sql/schema.txt";

/// How many differences the one-line summary names before "…".
const NAMED: usize = 3;

/// One object that differs: `found: None` is missing, `expected: None` is extra.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Drift {
    pub object: String,
    pub kind: String,
    pub expected: Option<String>,
    pub found: Option<String>,
}

/// The expected schema built into this binary; `None` when the build had no `schema.txt`.
pub fn embedded() -> Option<Schema> {
    EMBEDDED.map(|text| Schema::parse(text).expect("build.rs checked that schema.txt parses"))
}

/// Every object whose definition differs, is missing or is extra, sorted by kind and name.
pub fn compare(expected: &Schema, found: &Schema) -> Vec<Drift> {
    let mut out = Vec::new();
    let keys: std::collections::BTreeSet<_> = expected
        .objects
        .keys()
        .chain(found.objects.keys())
        .collect();
    for key in keys {
        let (e, f) = (expected.objects.get(key), found.objects.get(key));
        if e != f {
            out.push(Drift {
                kind: key.0.clone(),
                object: key.1.clone(),
                expected: e.cloned(),
                found: f.cloned(),
            });
        }
    }
    out
}

impl Drift {
    /// One line: what is expected and what was found, or the fix for an INVALID index.
    pub fn describe(&self) -> String {
        let (kind, object) = (&self.kind, &self.object);
        match (&self.expected, &self.found) {
            (_, Some(f)) if kind == "index" && f.ends_with(" INVALID") => {
                let (table, index) = object.split_once('.').unwrap_or(("?", object));
                format!(
                    "index {index} on {table} is INVALID (a failed or cancelled CREATE INDEX CONCURRENTLY): DROP INDEX CONCURRENTLY it and re-run, or REINDEX INDEX CONCURRENTLY"
                )
            }
            (Some(e), Some(f)) => format!(
                "{kind} {object}: {} expected, {} found",
                one_line(e),
                one_line(f)
            ),
            (Some(e), None) if e.is_empty() => format!("{kind} {object} is missing"),
            (None, Some(f)) if f.is_empty() => format!("{kind} {object}: not expected"),
            (Some(e), None) => format!("{kind} {object}: {} expected, none found", one_line(e)),
            (None, Some(f)) => format!("{kind} {object}: not expected, found {}", one_line(f)),
            (None, None) => format!("{kind} {object}"),
        }
    }
}

/// `N differences from sql/schema.txt: first; second; third; …`.
pub fn summary(drift: &[Drift]) -> String {
    let named: Vec<String> = drift.iter().take(NAMED).map(Drift::describe).collect();
    let more = if drift.len() > NAMED { "; …" } else { "" };
    let noun = if drift.len() == 1 {
        "difference"
    } else {
        "differences"
    };
    format!(
        "{} {noun} from {SCHEMA_FILE}: {}{more}",
        drift.len(),
        named.join("; ")
    )
}

/// A definition on one line (views span several), whitespace collapsed, at most 200 characters.
fn one_line(definition: &str) -> String {
    let text = definition.split_whitespace().collect::<Vec<_>>().join(" ");
    match text.char_indices().nth(200) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema(objects: &[(&str, &str, &str)]) -> Schema {
        let mut s = Schema::default();
        for (kind, name, definition) in objects {
            s.insert(kind, name, definition.to_string());
        }
        s
    }

    const STATUS: (&str, &str, &str) = (
        "column",
        "documents.status",
        "character varying(50) default 'pending'::character varying",
    );

    #[test]
    fn the_same_schema_has_no_drift() {
        let s = schema(&[("table", "documents", ""), STATUS]);
        assert_eq!(compare(&s, &s.clone()), []);
    }

    #[test]
    fn changed_missing_and_extra_objects_are_named() {
        let expected = schema(&[
            ("table", "documents", ""),
            STATUS,
            (
                "index",
                "documents.i",
                "CREATE INDEX i ON public.documents USING btree (status)",
            ),
            ("view", "v", " SELECT 1;"),
        ]);
        let found = schema(&[
            ("table", "documents", ""),
            ("column", "documents.status", "character varying(50)"),
            ("column", "documents.hotfix", "text"),
            (
                "index",
                "documents.i",
                "CREATE INDEX i ON public.documents USING btree (status) INVALID",
            ),
        ]);
        let drift = compare(&expected, &found);
        let lines: Vec<String> = drift.iter().map(Drift::describe).collect();
        assert_eq!(
            lines,
            [
                "column documents.hotfix: not expected, found text",
                "column documents.status: character varying(50) default 'pending'::character varying expected, character varying(50) found",
                "index i on documents is INVALID (a failed or cancelled CREATE INDEX CONCURRENTLY): DROP INDEX CONCURRENTLY it and re-run, or REINDEX INDEX CONCURRENTLY",
                "view v: SELECT 1; expected, none found",
            ]
        );
        assert_eq!(drift[0].expected, None);
        assert_eq!(drift[3].found, None);
        let line = summary(&drift);
        assert!(
            line.starts_with("4 differences from sql/schema.txt: column documents.hotfix"),
            "{line}"
        );
        assert!(line.ends_with("; …"), "{line}");
        assert!(!line.contains("view v"), "{line}");
    }

    #[test]
    fn long_definitions_are_cut_on_one_line() {
        let long = format!(" SELECT\n    {}", "x, ".repeat(100));
        let d = Drift {
            object: "v".into(),
            kind: "view".into(),
            expected: Some(long),
            found: None,
        };
        let line = d.describe();
        assert!(!line.contains('\n'));
        assert!(
            line.contains("SELECT x, x,") && line.contains("… expected"),
            "{line}"
        );
    }

    #[test]
    fn the_embedded_file_parses() {
        // build.rs refuses a missing file under sql/, so the workspace's build always carries one.
        assert!(embedded().is_some_and(|s| {
            s.objects
                .contains_key(&("table".into(), "documents".into()))
        }));
    }
}
