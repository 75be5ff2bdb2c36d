//! The statement splitter: a migration file cut into statements exactly where psql cuts it (its lexer,
//! `psqlscan.l`), with line numbers, comments removed. Std only and free of `crate::` paths, because
//! `build.rs` and `cargo xtask lint` compile this same file.
//!
//! One state per lexical context; a statement ends only at `;` in the base state with no open
//! parenthesis and no open `BEGIN ATOMIC … END` body. Backslashes are literal outside `E''` strings
//! (`standard_conforming_strings = on`, which the engine sets on its session).

use std::fmt;

/// One statement of a migration file, comments removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    /// 1-based line of the statement's first character in the file.
    pub line: usize,
    /// 1-based line of its last character.
    pub end_line: usize,
    pub text: String,
}

impl Statement {
    /// The statement on one line (runs of whitespace collapsed), as `plan` shows it.
    pub fn one_line(&self) -> String {
        self.text.split_whitespace().collect::<Vec<_>>().join(" ")
    }
}

/// What was still open at the end of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unclosed {
    /// `'…'` (also `B''`, `X''`, `N''`, `U&''`).
    QuotedString,
    /// `E'…'`, with backslash escapes.
    EscapeString,
    /// `"…"` (also `U&""`).
    QuotedIdentifier,
    /// `$tag$…`, with its tag.
    DollarBody(String),
    /// `/* …`, nested or not.
    BlockComment,
    /// `(` without its `)`.
    Parenthesis,
    /// `BEGIN ATOMIC` (or `BEGIN`) of a SQL-standard function body without its `END`.
    AtomicBody,
}

/// A file that cannot be split: something opened at `line` is never closed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitError {
    /// 1-based line where the unclosed construct starts.
    pub line: usize,
    pub what: Unclosed,
}

impl fmt::Display for SplitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.what {
            Unclosed::QuotedString => f.write_str("unterminated quoted string"),
            Unclosed::EscapeString => f.write_str("unterminated escape string E'…'"),
            Unclosed::QuotedIdentifier => f.write_str("unterminated quoted identifier \"…\""),
            Unclosed::DollarBody(tag) => write!(f, "unterminated dollar-quoted string {tag}"),
            Unclosed::BlockComment => f.write_str("unterminated /* comment"),
            Unclosed::Parenthesis => f.write_str("unclosed parenthesis ("),
            Unclosed::AtomicBody => f.write_str("unterminated BEGIN ATOMIC body (no matching END)"),
        }?;
        write!(f, " starting at line {}", self.line)
    }
}

impl std::error::Error for SplitError {}

/// Splits SQL into statements as psql does, comments removed, empty statements dropped.
pub fn split(sql: &str) -> Result<Vec<Statement>, SplitError> {
    let mut splitter = Splitter::new(sql);
    while splitter.pos < splitter.bytes.len() {
        splitter.step();
    }
    splitter.finish()
}

/// The lexical context at the current position (psqlscan.l's start conditions).
#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    /// Between tokens, in a statement or between statements (`INITIAL`).
    Base,
    /// `'…'`: `''` is a quote, backslashes are literal (`xq`, `xb`, `xh`, `xus`).
    QuotedString,
    /// `E'…'`: `''` and `\'` are quotes, `\` escapes the next character (`xe`).
    EscapeString,
    /// `"…"`: `""` is a quote (`xd`, `xui`).
    QuotedIdentifier,
    /// `$tag$…$tag$`: nothing inside is special but the same tag (`xdolq`).
    DollarBody { tag: String },
    /// `/* … */`, nesting (`xc`); `depth` counts the open `/*`.
    BlockComment { depth: usize },
    /// `-- …` up to the end of the line.
    LineComment,
}

/// psql's heuristic for SQL-standard bodies: in a statement starting `CREATE [OR REPLACE] FUNCTION` or
/// `… PROCEDURE`, outside parentheses, `BEGIN` opens a body, `CASE` inside it nests, `END` closes one.
#[derive(Debug, Default)]
struct AtomicBody {
    /// First letter of each of the statement's first four words when it is one of create, or,
    /// replace, function, procedure; 0 otherwise.
    leading: [u8; 4],
    words: usize,
    depth: usize,
    /// Where the `BEGIN` that opened the outermost body is.
    begin_at: usize,
}

impl AtomicBody {
    fn word(&mut self, word: &str, paren_depth: usize, at: usize) {
        let w = word.to_ascii_lowercase();
        let leading = ["create", "or", "replace", "function", "procedure"];
        if self.words < self.leading.len() && leading.contains(&w.as_str()) {
            self.leading[self.words] = w.as_bytes()[0];
        }
        self.words += 1;
        if !self.creates_routine() || paren_depth > 0 {
            return;
        }
        match w.as_str() {
            "begin" => {
                if self.depth == 0 {
                    self.begin_at = at;
                }
                self.depth += 1;
            }
            "case" if self.depth > 0 => self.depth += 1,
            "end" if self.depth > 0 => self.depth -= 1,
            _ => {}
        }
    }

    fn creates_routine(&self) -> bool {
        matches!(
            self.leading,
            [b'c', b'f' | b'p', ..] | [b'c', b'o', b'r', b'f' | b'p']
        )
    }
}

struct Splitter<'a> {
    sql: &'a str,
    bytes: &'a [u8],
    pos: usize,
    state: State,
    /// Byte offsets of every `\n`, for line numbers.
    newlines: Vec<usize>,
    /// Where the open string, quoted identifier, body or comment started.
    opened_at: usize,
    paren_depth: usize,
    /// Where the outermost open `(` is.
    paren_at: usize,
    atomic: AtomicBody,
    /// The current statement: its first and past-the-last kept byte, and the comments inside it.
    first: Option<usize>,
    end: usize,
    comments: Vec<(usize, usize)>,
    statements: Vec<Statement>,
}

impl<'a> Splitter<'a> {
    fn new(sql: &'a str) -> Self {
        Splitter {
            sql,
            bytes: sql.as_bytes(),
            pos: 0,
            state: State::Base,
            newlines: sql.match_indices('\n').map(|(i, _)| i).collect(),
            opened_at: 0,
            paren_depth: 0,
            paren_at: 0,
            atomic: AtomicBody::default(),
            first: None,
            end: 0,
            comments: Vec::new(),
            statements: Vec::new(),
        }
    }

    fn line_at(&self, pos: usize) -> usize {
        1 + self.newlines.partition_point(|&n| n < pos)
    }

    fn at(&self, i: usize) -> u8 {
        self.bytes.get(i).copied().unwrap_or(0)
    }

    /// One transition from the current state.
    fn step(&mut self) {
        match self.state.clone() {
            State::Base => self.base(),
            State::QuotedString => self.quoted_string(false),
            State::EscapeString => self.quoted_string(true),
            State::QuotedIdentifier => self.quoted_identifier(),
            State::DollarBody { tag } => self.dollar_body(&tag),
            State::BlockComment { depth } => self.block_comment(depth),
            State::LineComment => self.line_comment(),
        }
    }

    /// Marks `start..end` as statement text (it begins and ends with a non-blank byte).
    fn keep(&mut self, start: usize, end: usize) {
        self.first.get_or_insert(start);
        self.end = end;
    }

    /// Enters `state` for a construct opening at `pos` with `len` bytes.
    fn open(&mut self, state: State, len: usize) {
        if !matches!(state, State::BlockComment { .. } | State::LineComment) {
            self.keep(self.pos, self.pos + len);
        }
        self.opened_at = self.pos;
        self.pos += len;
        self.state = state;
    }

    fn base(&mut self) {
        let (c, next) = (self.at(self.pos), self.at(self.pos + 1));
        match c {
            b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c => self.pos += 1,
            b'-' if next == b'-' => self.open(State::LineComment, 2),
            b'/' if next == b'*' => self.open(State::BlockComment { depth: 1 }, 2),
            b'\'' => self.open(State::QuotedString, 1),
            b'"' => self.open(State::QuotedIdentifier, 1),
            b'e' | b'E' if next == b'\'' => self.open(State::EscapeString, 2),
            b'b' | b'B' | b'x' | b'X' | b'n' | b'N' if next == b'\'' => {
                self.open(State::QuotedString, 2)
            }
            b'u' | b'U' if next == b'&' && self.at(self.pos + 2) == b'\'' => {
                self.open(State::QuotedString, 3)
            }
            b'u' | b'U' if next == b'&' && self.at(self.pos + 2) == b'"' => {
                self.open(State::QuotedIdentifier, 3)
            }
            b'$' => match dollar_tag(&self.bytes[self.pos..]) {
                Some(len) => {
                    let tag = self.sql[self.pos..self.pos + len].to_string();
                    self.open(State::DollarBody { tag }, len)
                }
                // `$1`: a parameter; a lone `$` is an operator character.
                None if next.is_ascii_digit() => self.number(1),
                None => self.token(1),
            },
            b'0'..=b'9' => self.number(0),
            c if is_ident_start(c) => self.identifier(),
            b'(' => {
                if self.paren_depth == 0 {
                    self.paren_at = self.pos;
                }
                self.paren_depth += 1;
                self.token(1);
            }
            b')' => {
                self.paren_depth = self.paren_depth.saturating_sub(1);
                self.token(1);
            }
            b';' if self.paren_depth == 0 && self.atomic.depth == 0 => {
                self.end_statement();
                self.pos += 1;
            }
            _ => self.token(1),
        }
    }

    /// A plain token of `len` bytes at `pos`.
    fn token(&mut self, len: usize) {
        self.keep(self.pos, self.pos + len);
        self.pos += len;
    }

    /// A word: keywords and identifiers alike (`$` may continue one, so it starts no tag there).
    fn identifier(&mut self) {
        let start = self.pos;
        let len = self.bytes[start..]
            .iter()
            .take_while(|&&c| is_ident_cont(c))
            .count();
        let word = &self.sql[start..start + len];
        self.atomic.word(word, self.paren_depth, start);
        self.token(len);
    }

    /// A number (or a `$n` parameter after `prefix` bytes), with the one letter of trailing junk the
    /// lexer takes with it, so `1e'x'` is a number then a plain string.
    fn number(&mut self, prefix: usize) {
        let rest = &self.bytes[self.pos + prefix..];
        let mut len = prefix + rest.iter().take_while(|c| c.is_ascii_digit()).count();
        let junk = self.at(self.pos + len);
        if is_ident_start(junk) {
            len += self.sql[self.pos + len..]
                .chars()
                .next()
                .map_or(1, char::len_utf8);
        }
        self.token(len);
    }

    /// Inside `'…'` or `E'…'`.
    fn quoted_string(&mut self, escapes: bool) {
        let c = self.at(self.pos);
        if escapes && c == b'\\' {
            // The escaped byte is skipped; a multibyte character's other bytes are never special.
            self.pos = (self.pos + 2).min(self.bytes.len());
        } else if c == b'\'' && self.at(self.pos + 1) == b'\'' {
            self.pos += 2;
        } else if c == b'\'' {
            self.pos += 1;
            self.keep(self.opened_at, self.pos);
            // `'a'` newline `'b'` is one string, still in the same state (psql's `xqs`).
            match self.continuation(self.pos) {
                Some((quote, comments)) => {
                    self.comments.extend(comments);
                    self.pos = quote + 1;
                }
                None => self.state = State::Base,
            }
        } else {
            self.pos += 1;
        }
    }

    /// After a closing quote at `from - 1`: the position of the `'` that continues the string across a
    /// newline (whitespace and `--` comments only in between), with those comments.
    fn continuation(&self, from: usize) -> Option<(usize, Vec<(usize, usize)>)> {
        let mut i = from;
        let mut comments = Vec::new();
        let mut newline = false;
        loop {
            match self.at(i) {
                b' ' | b'\t' | 0x0c | 0x0b => i += 1,
                b'\n' | b'\r' => {
                    newline = true;
                    i += 1;
                }
                b'-' if self.at(i + 1) == b'-' => {
                    let end = self.line_end(i);
                    comments.push((i, end));
                    i = end;
                    // A comment after the newline must end with one too.
                    if newline && i >= self.bytes.len() {
                        return None;
                    }
                }
                b'\'' if newline => return Some((i, comments)),
                _ => return None,
            }
        }
    }

    fn line_end(&self, from: usize) -> usize {
        self.bytes[from..]
            .iter()
            .position(|&c| c == b'\n' || c == b'\r')
            .map_or(self.bytes.len(), |p| from + p)
    }

    /// Inside `"…"`.
    fn quoted_identifier(&mut self) {
        match (self.at(self.pos), self.at(self.pos + 1)) {
            (b'"', b'"') => self.pos += 2,
            (b'"', _) => {
                self.pos += 1;
                self.keep(self.opened_at, self.pos);
                self.state = State::Base;
            }
            _ => self.pos += 1,
        }
    }

    /// Inside a `$tag$` body: only the same tag ends it; another `$other$` is body text.
    fn dollar_body(&mut self, tag: &str) {
        let Some(offset) = self.bytes[self.pos..].iter().position(|&c| c == b'$') else {
            self.pos = self.bytes.len();
            return;
        };
        self.pos += offset;
        match dollar_tag(&self.bytes[self.pos..]) {
            Some(len) if &self.sql[self.pos..self.pos + len] == tag => {
                self.pos += len;
                self.keep(self.opened_at, self.pos);
                self.state = State::Base;
            }
            // Another tag's closing `$` may open this one's: resume right after its first `$`.
            _ => self.pos += 1,
        }
    }

    /// Inside `/* … */`: `/*` nests, `*/` closes one level.
    fn block_comment(&mut self, depth: usize) {
        match (self.at(self.pos), self.at(self.pos + 1)) {
            (b'*', b'/') if depth == 1 => {
                self.pos += 2;
                self.comments.push((self.opened_at, self.pos));
                self.state = State::Base;
            }
            (b'*', b'/') => {
                self.pos += 2;
                self.state = State::BlockComment { depth: depth - 1 };
            }
            (b'/', b'*') => {
                self.pos += 2;
                self.state = State::BlockComment { depth: depth + 1 };
            }
            _ => self.pos += 1,
        }
    }

    /// Inside `-- …`: the newline itself is not part of the comment.
    fn line_comment(&mut self) {
        self.pos = self.line_end(self.pos);
        self.comments.push((self.opened_at, self.pos));
        self.state = State::Base;
    }

    /// Ends the current statement (at a `;`, or at the end of the file).
    fn end_statement(&mut self) {
        if let Some(first) = self.first.take() {
            let mut text = String::new();
            let mut from = first;
            for &(start, end) in self
                .comments
                .iter()
                .filter(|c| c.0 >= first && c.1 <= self.end)
            {
                text.push_str(&self.sql[from..start]);
                text.push(' ');
                from = end;
            }
            text.push_str(&self.sql[from..self.end]);
            self.statements.push(Statement {
                line: self.line_at(first),
                end_line: self.line_at(self.end - 1),
                text,
            });
        }
        self.comments.clear();
        self.atomic = AtomicBody::default();
    }

    fn finish(mut self) -> Result<Vec<Statement>, SplitError> {
        let unclosed = match &self.state {
            State::QuotedString => Some((self.opened_at, Unclosed::QuotedString)),
            State::EscapeString => Some((self.opened_at, Unclosed::EscapeString)),
            State::QuotedIdentifier => Some((self.opened_at, Unclosed::QuotedIdentifier)),
            State::DollarBody { tag } => Some((self.opened_at, Unclosed::DollarBody(tag.clone()))),
            State::BlockComment { .. } => Some((self.opened_at, Unclosed::BlockComment)),
            _ if self.paren_depth > 0 => Some((self.paren_at, Unclosed::Parenthesis)),
            _ if self.atomic.depth > 0 => Some((self.atomic.begin_at, Unclosed::AtomicBody)),
            // A `--` comment ends with the file; it comes after the statement's last token.
            State::Base | State::LineComment => None,
        };
        if let Some((at, what)) = unclosed {
            let line = self.line_at(at);
            return Err(SplitError { line, what });
        }
        self.end_statement();
        Ok(self.statements)
    }
}

/// The length of the `$tag$` (or `$$`) at the start of `s`; a tag does not start with a digit.
fn dollar_tag(s: &[u8]) -> Option<usize> {
    let rest = s.strip_prefix(b"$")?;
    let name = rest.iter().take_while(|&&c| is_tag_cont(c)).count();
    let starts_well = name == 0 || !rest[0].is_ascii_digit();
    (starts_well && rest.get(name) == Some(&b'$')).then_some(name + 2)
}

/// `[A-Za-z\x80-\xff_]`: bytes of non-ASCII characters count as letters, as in PostgreSQL's lexer.
fn is_ident_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_' || c >= 0x80
}

fn is_tag_cont(c: u8) -> bool {
    is_ident_start(c) || c.is_ascii_digit()
}

fn is_ident_cont(c: u8) -> bool {
    is_tag_cont(c) || c == b'$'
}

// An explicit path resolves the same when `build.rs` and `cargo xtask lint` include this file by path.
#[cfg(test)]
#[path = "sql/tests.rs"]
mod tests;
