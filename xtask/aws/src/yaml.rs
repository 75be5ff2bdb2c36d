//! The small YAML writer `template` renders with: block style, two-space indents, a person's comments,
//! and CloudFormation's short intrinsic tags. Its input is a JSON value with two conventions: a key
//! starting with `#` is a comment line (its value is ignored), and an object whose only key starts
//! with `!` (`{"!GetAtt": "Role.Arn"}`) is that tag applied to the scalar (`!GetAtt Role.Arn`).

use serde_json::{Map, Value};

/// `v` (an object) as a YAML document body at column 0.
pub fn render(v: &Map<String, Value>) -> String {
    let mut out = String::new();
    write_map(&mut out, v, 0);
    out
}

/// A comment entry for [`render`]: the key is the comment line itself.
pub fn comment(text: &str) -> String {
    format!("# {text}")
}

fn write_map(out: &mut String, map: &Map<String, Value>, indent: usize) {
    let pad = " ".repeat(indent);
    for (key, value) in map {
        if key.starts_with('#') {
            out.push_str(&format!("{pad}{key}\n"));
            continue;
        }
        out.push_str(&format!("{pad}{}:", scalar(key)));
        match inline(value) {
            Some(text) => out.push_str(&format!(" {text}\n")),
            None => {
                out.push('\n');
                write_block(out, value, indent + 2);
            }
        }
    }
}

fn write_block(out: &mut String, value: &Value, indent: usize) {
    match value {
        Value::Object(map) => write_map(out, map, indent),
        Value::Array(items) => write_seq(out, items, indent),
        _ => unreachable!("scalars are written inline"),
    }
}

fn write_seq(out: &mut String, items: &[Value], indent: usize) {
    let pad = " ".repeat(indent);
    for item in items {
        if let Some(text) = inline(item) {
            out.push_str(&format!("{pad}- {text}\n"));
            continue;
        }
        // The item's block at two more columns, its first line's indent taken by the dash.
        let mut block = String::new();
        write_block(&mut block, item, indent + 2);
        out.push_str(&pad);
        out.push_str("- ");
        out.push_str(&block[indent + 2..]);
    }
}

/// The one-line form of a scalar, a tagged scalar or an empty collection; `None` for a block.
fn inline(v: &Value) -> Option<String> {
    match v {
        Value::Null => Some("null".to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        Value::String(s) => Some(scalar(s)),
        Value::Array(a) if a.is_empty() => Some("[]".to_string()),
        Value::Object(m) if m.is_empty() => Some("{}".to_string()),
        Value::Object(m) => match m.iter().next() {
            Some((tag, Value::String(s))) if m.len() == 1 && tag.starts_with('!') => {
                Some(format!("{tag} {}", scalar(s)))
            }
            _ => None,
        },
        Value::Array(_) => None,
    }
}

/// A string plain when YAML cannot read it as anything else, else double-quoted (JSON's escapes are
/// YAML's): no leading digit (numbers, dates such as `2012-10-17`), no indicator, no keyword.
fn scalar(s: &str) -> String {
    let safe_char = |c: char| c.is_ascii_alphanumeric() || "_./:*@+=-".contains(c);
    let keyword = matches!(
        s.to_ascii_lowercase().as_str(),
        "true" | "false" | "yes" | "no" | "on" | "off" | "null" | "y" | "n"
    );
    let plain = s
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '/')
        && s.chars().all(safe_char)
        && !s.ends_with(':')
        && !keyword;
    if plain {
        s.to_string()
    } else {
        serde_json::to_string(s).expect("a string serializes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn block_style_with_comments_tags_and_quoting() {
        let v = json!({
            "# a comment": null,
            "Version": "2012-10-17",
            "Port": "5432",
            "Flag": "true",
            "Arn": "arn:aws:iam::aws:policy/x",
            "Spaced": "two words",
            "Role": {"!GetAtt": "Role.Arn"},
            "Empty": [],
            "List": ["a", {"K": 1, "L": ["x"]}, ["nested"]],
            "Map": {"Inner": {"Deep": 1.5}}
        });
        let text = render(v.as_object().unwrap());
        assert_eq!(
            text,
            "# a comment\n\
             Version: \"2012-10-17\"\n\
             Port: \"5432\"\n\
             Flag: \"true\"\n\
             Arn: arn:aws:iam::aws:policy/x\n\
             Spaced: \"two words\"\n\
             Role: !GetAtt Role.Arn\n\
             Empty: []\n\
             List:\n  - a\n  - K: 1\n    L:\n      - x\n  - - nested\n\
             Map:\n  Inner:\n    Deep: 1.5\n"
        );
    }
}
