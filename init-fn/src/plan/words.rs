//! The words of a statement as `plan` reads them: lowercased tokens (quoted identifiers kept, string
//! literals blanked), and the small readers that pick table and column names out of them. A child of
//! `plan` (loaded by path so `cargo xtask lint` compiles it too), std only.

/// Lowercased words, with `(`, `)` and `,` as words of their own; quoted identifiers kept as written.
pub(super) fn tokens(statement: &str) -> Vec<String> {
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
            '(' | ')' | ',' | ';' | '=' => {
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
pub(super) fn skip(w: &[&str], i: usize, seq: &[&str]) -> usize {
    if w.get(i..i + seq.len()) == Some(seq) {
        i + seq.len()
    } else {
        i
    }
}

/// The name after the first `keywords` (e.g. `ON [ONLY] t`).
pub(super) fn after(w: &[&str], keywords: &[&str]) -> Option<String> {
    let p = w.windows(keywords.len()).position(|x| x == keywords)?;
    let i = skip(w, p + keywords.len(), &["only"]);
    w.get(i)
        .filter(|n| !matches!(**n, "(" | ")" | ","))
        .map(|n| name(n))
}

/// The comma-separated names from `i` (`a, b CASCADE`).
pub(super) fn list(w: &[&str], i: usize) -> Vec<String> {
    w[i.min(w.len())..]
        .iter()
        .take_while(|x| {
            !matches!(
                **x,
                "cascade" | "restrict" | "in" | "restart" | "continue" | "(" | ";"
            )
        })
        .filter(|x| **x != "," && **x != "only")
        .map(|x| name(x))
        .collect()
}

/// Tables named by `REFERENCES t`.
pub(super) fn references(w: &[&str]) -> Vec<String> {
    w.windows(2)
        .filter(|p| p[0] == "references")
        .map(|p| name(p[1]))
        .collect()
}

/// The columns `UPDATE … SET a = …, (b, c) = …` assigns (top level, up to `FROM`/`WHERE`/`RETURNING`).
pub(super) fn assigned(w: &[&str]) -> Vec<String> {
    let Some(start) = w.iter().position(|x| *x == "set") else {
        return Vec::new();
    };
    let mut columns = Vec::new();
    let (mut depth, mut expect) = (0i32, true);
    for x in &w[start + 1..] {
        match *x {
            "(" => depth += 1,
            ")" => depth -= 1,
            "from" | "where" | "returning" if depth == 0 => break,
            "," if depth == 0 => expect = true,
            "=" if depth == 0 => expect = false,
            c if expect && depth <= 1 && c != "," => columns.push(name(c)),
            _ => {}
        }
    }
    columns
}

/// `public.t`, `"t"` → `t`.
pub fn name(n: &str) -> String {
    let n = n.strip_prefix("public.").unwrap_or(n);
    let n = n.strip_prefix("\"public\".").unwrap_or(n);
    n.trim_matches('"').to_string()
}

/// Whether `word` occurs outside parentheses (`CREATE TABLE t AS …`, not `GENERATED ALWAYS AS (…)`).
pub(super) fn at_top_level(w: &[&str], word: &str) -> bool {
    let mut depth = 0i32;
    w.iter().any(|x| {
        depth += match *x {
            "(" => 1,
            ")" => -1,
            _ => 0,
        };
        depth == 0 && *x == word
    })
}
