//! The canonical description of a schema: one entry per object, keyed by kind and name, whose value is
//! the server's own rendering of its definition. Its text form (`sql/schema.txt`, written by
//! `cargo xtask schema`) is one line per object, sorted, `kind name: definition`; a definition that
//! spans lines continues on lines indented by two spaces; `#` lines are comments. Std only: build.rs
//! and xtask share this file.

use std::collections::BTreeMap;

/// Objects by `(kind, name)`; the value is the definition (empty for a table).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Schema {
    pub objects: BTreeMap<(String, String), String>,
}

/// A line of the text form that is not `kind name[: definition]` or a continuation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub line: usize,
    pub message: String,
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

/// What marks the continuation of a multi-line definition.
const CONTINUATION: &str = "  ";

impl Schema {
    pub fn insert(&mut self, kind: &str, name: &str, definition: String) {
        self.objects
            .insert((kind.to_string(), name.to_string()), definition);
    }

    /// The text form, after `header` (each of its lines becomes a `# ` comment).
    pub fn render(&self, header: &str) -> String {
        let mut out = String::new();
        for line in header.lines() {
            out.push_str(if line.is_empty() { "#" } else { "# " });
            out.push_str(line);
            out.push('\n');
        }
        for ((kind, name), definition) in &self.objects {
            out.push_str(kind);
            out.push(' ');
            out.push_str(name);
            let mut lines = definition.split('\n');
            if let Some(first) = lines.next().filter(|_| !definition.is_empty()) {
                out.push_str(": ");
                out.push_str(first);
            }
            for more in lines {
                out.push('\n');
                out.push_str(CONTINUATION);
                out.push_str(more);
            }
            out.push('\n');
        }
        out
    }

    /// Reads the text form back; `render` then `parse` gives the same schema.
    pub fn parse(text: &str) -> Result<Schema, ParseError> {
        let mut schema = Schema::default();
        let mut last: Option<(String, String)> = None;
        for (n, line) in text.lines().enumerate() {
            let error = |message: &str| ParseError {
                line: n + 1,
                message: message.to_string(),
            };
            if let Some(more) = line.strip_prefix(CONTINUATION) {
                let key = last.as_ref().ok_or_else(|| error("continues no object"))?;
                let definition = schema.objects.get_mut(key).expect("the last object");
                definition.push('\n');
                definition.push_str(more);
                continue;
            }
            if line.starts_with('#') || line.trim().is_empty() {
                last = None;
                continue;
            }
            let (kind, rest) = line
                .split_once(' ')
                .ok_or_else(|| error("expected `kind name[: definition]`"))?;
            let (name, definition) = rest.split_once(": ").unwrap_or((rest, ""));
            let key = (kind.to_string(), name.to_string());
            if schema.objects.contains_key(&key) {
                return Err(error(&format!("{kind} {name} appears twice")));
            }
            schema.objects.insert(key.clone(), definition.to_string());
            last = Some(key);
        }
        Ok(schema)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_form_reads_back_exactly() {
        let mut s = Schema::default();
        s.insert("table", "documents", String::new());
        s.insert(
            "column",
            "documents.status",
            "character varying(50) default 'pending'::character varying".into(),
        );
        s.insert(
            "view",
            "v",
            " SELECT id,\n    s3_key\n   FROM documents;".into(),
        );
        s.insert("view", "empty_lines", "a\n\nb: c".into());
        let text = s.render("generated\n\nby a test");
        assert!(text.starts_with("# generated\n#\n# by a test\ncolumn documents.status: "));
        assert!(text.contains("view v:  SELECT id,\n      s3_key\n     FROM documents;\n"));
        assert_eq!(Schema::parse(&text).unwrap(), s);
    }

    #[test]
    fn bad_text_names_the_line() {
        let err = Schema::parse("# x\n  orphan\n").unwrap_err();
        assert_eq!(err.line, 2);
        let err = Schema::parse("table a\ntable a\n").unwrap_err();
        assert_eq!(
            (err.line, err.message.as_str()),
            (2, "table a appears twice")
        );
        assert_eq!(Schema::parse("tablea\n").unwrap_err().line, 1);
    }
}
