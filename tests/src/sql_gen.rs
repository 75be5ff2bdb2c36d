//! Generated migration files for the differential splitter test: valid SQL assembled from
//! PostgreSQL's lexical pieces (every string and comment form, dollar tags, parentheses, `BEGIN ATOMIC`
//! bodies, rules with several actions), with semicolons and quote characters inside each of them.
//! Deterministic: the same seed gives the same file.

/// splitmix64: small, fast, and plenty for picking pieces.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// 0..n.
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }

    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
}

/// Characters that end or open something somewhere: each piece's content draws from these.
const TRICKY: &[&str] = &[
    "a", "Z", " ", ";", ";", "\n", "--", "/*", "*/", "'", "\"", "$", "$$", "$a$", "$1", "(", ")",
    "é", "\\", "e", "E'", "U&", "begin", "end", "case", "\t",
];

/// One generated file.
pub fn file(seed: u64) -> String {
    let mut g = Gen {
        rng: Rng::new(seed),
        n: 0,
    };
    let mut out = String::new();
    if g.rng.chance(20) {
        out.push_str("-- init-fn: no-transaction\n");
    }
    let count = 1 + g.rng.below(6);
    for i in 0..count {
        out.push_str(&g.sep());
        out.push_str(&g.statement());
        let last = i + 1 == count;
        if !last || g.rng.chance(70) {
            out.push(';');
        }
        if g.rng.chance(10) {
            out.push_str(&g.sep());
            out.push(';');
        }
    }
    out.push_str(&g.sep());
    out
}

struct Gen {
    rng: Rng,
    /// Counter for unique object names.
    n: usize,
}

impl Gen {
    /// Content for a piece: tricky characters, minus what the piece cannot hold.
    fn content(&mut self, forbidden: &[&str]) -> String {
        let mut s = String::new();
        for _ in 0..self.rng.below(8) {
            let atom = self.rng.pick(TRICKY);
            if !forbidden.iter().any(|f| atom.contains(f)) {
                s.push_str(atom);
            }
        }
        s
    }

    /// Whitespace or a comment between two tokens.
    fn sep(&mut self) -> String {
        match self.rng.below(10) {
            0..=3 => " ".to_string(),
            4 => "\n".to_string(),
            5 => self.rng.pick(&["\t \n  ", "\r\n", " --\r\n"]).to_string(),
            6 | 7 => format!(" /*{}*/ ", self.block_comment_body(2)),
            _ => format!(" --{}\n", self.content(&["\n"])),
        }
    }

    fn block_comment_body(&mut self, depth: usize) -> String {
        let mut s = self.content(&["/*", "*/", "*", "/"]);
        if depth > 0 && self.rng.chance(40) {
            s.push_str(&format!("/*{}*/", self.block_comment_body(depth - 1)));
            s.push_str(&self.content(&["/*", "*/", "*", "/"]));
        }
        s
    }

    /// A constant of any string form, bit strings included.
    fn string(&mut self) -> String {
        match self.rng.below(10) {
            0 => self
                .rng
                .pick(&["B'0101'", "X'1F'", "b''", "x'ab'"])
                .to_string(),
            _ => self.sconst(),
        }
    }

    /// A character string constant, in any of its lexical forms.
    fn sconst(&mut self) -> String {
        match self.rng.below(8) {
            0 | 1 => format!("'{}'", self.content(&["'"])),
            2 => format!("'{}''{}'", self.content(&["'"]), self.content(&["'"])),
            3 => format!("E'{}'", self.escaped()),
            // A string continued on the next line keeps its kind: `\'` in the second part is a quote.
            4 => format!("E'{}'\n  '{}'", self.escaped(), self.escaped()),
            5 => format!("'{}'\n'{}'", self.content(&["'"]), self.content(&["'"])),
            6 => match self.rng.below(3) {
                0 => format!("U&'{}\\0061\\+000062'", self.content(&["'", "\\"])),
                1 => format!(
                    "U&'{}!0061!!'{}UESCAPE{}'!'",
                    self.content(&["'", "!"]),
                    self.sep(),
                    self.sep()
                ),
                _ => format!("U&'{}'", self.content(&["\\"]).replace('\'', "''")),
            },
            _ => self.dollar(),
        }
    }

    /// The inside of an `E''` string: tricky characters and backslash escapes.
    fn escaped(&mut self) -> String {
        let mut s = String::new();
        for _ in 0..self.rng.below(6) {
            match self.rng.below(4) {
                0 => s.push_str(
                    self.rng
                        .pick(&["\\'", "\\\\", "\\n", "\\t", "\\;", "\\\"", "''"]),
                ),
                _ => s.push_str(&self.content(&["'", "\\"])),
            }
        }
        s
    }

    /// `$tag$…$tag$` whose body holds other tags, `$1`, quotes and comment markers.
    fn dollar(&mut self) -> String {
        let tag = format!("${}$", self.rng.pick(&["", "a", "body", "_x1", "é", "fn"]));
        loop {
            let mut body = self.content(&[]);
            if self.rng.chance(50) {
                body.push_str(self.rng.pick(&["$b$", "$$", "$body$", "$a", "$1$", " $ "]));
                body.push_str(&self.content(&[]));
            }
            // Only a body the closing tag really closes (the first occurrence of the tag is the end).
            let closed = format!("{body}{tag}");
            if closed.find(&tag) == Some(body.len()) {
                return format!("{tag}{body}{tag}");
            }
        }
    }

    /// A quoted identifier (`""` inside), plain or `U&`.
    fn quoted_ident(&mut self) -> String {
        let inner = format!("x{}", self.content(&["\"", "\\", "\n", "\t"]));
        match self.rng.below(3) {
            0 => format!("U&\"{inner}\\0061\""),
            1 => format!("\"{}\"\"{}\"", inner, self.content(&["\"", "\n", "\t"])),
            _ => format!("\"{inner}\""),
        }
    }

    /// A value expression.
    fn expr(&mut self, depth: usize) -> String {
        match self.rng.below(if depth == 0 { 4 } else { 7 }) {
            0 | 1 => self.string(),
            2 => self
                .rng
                .pick(&["1", "2.5", "1e3", "a$b", "x$1$"])
                .to_string(),
            3 => format!("{}::text", self.string()),
            4 => format!(
                "({}{}||{}{})",
                self.expr(depth - 1),
                self.sep(),
                self.sep(),
                self.expr(depth - 1)
            ),
            5 => format!(
                "CASE{}WHEN{}true{}THEN{}{}{}ELSE{}{}{}END",
                self.sep(),
                self.sep(),
                self.sep(),
                self.sep(),
                self.expr(depth - 1),
                self.sep(),
                self.sep(),
                self.expr(depth - 1),
                self.sep()
            ),
            _ => format!(
                "ARRAY[{},{}{}]",
                self.expr(depth - 1),
                self.sep(),
                self.expr(depth - 1)
            ),
        }
    }

    fn select(&mut self) -> String {
        let mut s = format!("SELECT{}{}", self.sep(), self.expr(2));
        for _ in 0..self.rng.below(3) {
            s.push_str(&format!(",{}{}", self.sep(), self.expr(2)));
            if self.rng.chance(40) {
                s.push_str(&format!(
                    "{}AS{}{}",
                    self.sep(),
                    self.sep(),
                    self.quoted_ident()
                ));
            }
        }
        s
    }

    fn name(&mut self, prefix: &str) -> String {
        self.n += 1;
        format!("{prefix}{}", self.n)
    }

    /// One statement, without its `;`.
    fn statement(&mut self) -> String {
        let s = |g: &mut Gen| g.sep();
        match self.rng.below(14) {
            0 | 1 => self.select(),
            2 => format!(
                "INSERT INTO t{}(a,{}b){}VALUES{}({},{})",
                s(self),
                s(self),
                s(self),
                s(self),
                self.expr(2),
                self.expr(1)
            ),
            3 => format!("COMMENT ON TABLE documents IS{}{}", s(self), self.sconst()),
            4 => format!(
                "CREATE FUNCTION {}() RETURNS text LANGUAGE sql AS{}{}",
                self.name("f"),
                s(self),
                self.sconst()
            ),
            5 | 6 => self.atomic_function(),
            7 => {
                let actions: Vec<String> = (0..1 + self.rng.below(3))
                    .map(|i| match (i + self.rng.below(3)) % 3 {
                        0 => format!("NOTIFY{}{}", s(self), self.name("ch")),
                        1 => self.select(),
                        _ => format!("INSERT INTO log VALUES ({})", self.expr(1)),
                    })
                    .collect();
                let tail = if self.rng.chance(30) { ";" } else { "" };
                format!(
                    "CREATE RULE {} AS ON INSERT TO t DO ALSO{}({}{tail})",
                    self.name("r"),
                    s(self),
                    actions.join(&format!(";{}", s(self)))
                )
            }
            8 => format!("DO{}{}", s(self), self.dollar()),
            9 => self
                .rng
                .pick(&["BEGIN", "COMMIT", "begin", "END"])
                .to_string(),
            10 => format!(
                "CREATE TABLE {} (a text DEFAULT{}{},{}{} int, CHECK (a <> {}))",
                self.name("t"),
                s(self),
                self.expr(1),
                s(self),
                self.quoted_ident(),
                self.string()
            ),
            11 => format!(
                "CREATE VIEW {} AS{}{}",
                self.name("v"),
                s(self),
                self.select()
            ),
            12 => format!(
                "CREATE INDEX ON documents{}(({}file_name ||{}{}))",
                s(self),
                s(self),
                s(self),
                self.string()
            ),
            _ => format!(
                "PREPARE {} AS SELECT $1::text ||{}{}",
                self.name("p"),
                s(self),
                self.string()
            ),
        }
    }

    /// `CREATE [OR REPLACE] FUNCTION|PROCEDURE … BEGIN ATOMIC … END`, `CASE … END` inside.
    fn atomic_function(&mut self) -> String {
        let procedure = self.rng.chance(30);
        let head = format!(
            "CREATE{}{}{}",
            if self.rng.chance(40) {
                " OR REPLACE "
            } else {
                " "
            },
            if procedure { "PROCEDURE " } else { "FUNCTION " },
            self.name(if procedure { "p" } else { "f" })
        );
        let returns = if procedure { "" } else { " RETURNS text" };
        let mut body = String::new();
        for _ in 0..self.rng.below(4) {
            let stmt = match self.rng.below(3) {
                0 if !procedure => format!("SELECT{}{}", self.sep(), self.expr(2)),
                1 => format!(
                    "SELECT CASE WHEN a > 0 THEN{}{}{}ELSE {} END",
                    self.sep(),
                    self.expr(1),
                    self.sep(),
                    self.expr(1)
                ),
                _ => format!("INSERT INTO t VALUES ({})", self.expr(1)),
            };
            body.push_str(&format!("{}{stmt};", self.sep()));
        }
        if !procedure && body.is_empty() {
            body = format!(" SELECT {};", self.expr(1));
        }
        format!(
            "{head}(a int){returns} LANGUAGE sql{}BEGIN ATOMIC{body}{}END",
            self.sep(),
            self.sep()
        )
    }
}
