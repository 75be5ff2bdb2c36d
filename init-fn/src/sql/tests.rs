//! Table tests of the splitter: (input, expected statements), and each unclosed construct's error.

use super::*;

/// Each statement of `sql` on one line.
fn lines(sql: &str) -> Vec<String> {
    match split(sql) {
        Ok(s) => s.iter().map(Statement::one_line).collect(),
        Err(e) => panic!("{sql:?}: {e}"),
    }
}

#[test]
fn splits_where_psql_does() {
    let cases: &[(&str, &[&str])] = &[
        ("SELECT 1; SELECT 2", &["SELECT 1", "SELECT 2"]),
        (";; SELECT 1;;", &["SELECT 1"]),
        ("-- only a comment\n/* and another */", &[]),
        // standard strings: '' is a quote, a backslash is just a character
        (
            "SELECT 'it''s; here'; SELECT 2",
            &["SELECT 'it''s; here'", "SELECT 2"],
        ),
        (r"SELECT 'a\'; SELECT 'b'", &[r"SELECT 'a\'", "SELECT 'b'"]),
        (
            "SELECT '--', '/*'; SELECT 2",
            &["SELECT '--', '/*'", "SELECT 2"],
        ),
        // escape strings: \' is a quote
        (
            r"SELECT E'it\'s; here'; SELECT 2",
            &[r"SELECT E'it\'s; here'", "SELECT 2"],
        ),
        (r"SELECT e'\\'; SELECT 2", &[r"SELECT e'\\'", "SELECT 2"]),
        (
            r"SELECT E'a''b;\\\'c'; SELECT 2",
            &[r"SELECT E'a''b;\\\'c'", "SELECT 2"],
        ),
        // a word ending in e is not an E prefix; neither is a number's trailing letter
        (
            r"SELECT name'a\'; SELECT 2",
            &[r"SELECT name'a\'", "SELECT 2"],
        ),
        (r"SELECT 1e'a\'; SELECT 2", &[r"SELECT 1e'a\'", "SELECT 2"]),
        // a string continued on the next line keeps its kind
        (
            "SELECT E'a'\n'\\'; b'; SELECT 2",
            &["SELECT E'a' '\\'; b'", "SELECT 2"],
        ),
        (
            "SELECT E'a' -- c\n -- d\n '\\';'; SELECT 2",
            &["SELECT E'a' '\\';'", "SELECT 2"],
        ),
        (
            "SELECT 'a'\n'\\'; SELECT 2",
            &["SELECT 'a' '\\'", "SELECT 2"],
        ),
        (
            "SELECT E'a' '\\'; SELECT 2",
            &["SELECT E'a' '\\'", "SELECT 2"],
        ),
        // B'', X'', N'', U&'' and U&"" end at their quote
        (
            r"SELECT B'01', X'1f', N'a\'; SELECT 2",
            &[r"SELECT B'01', X'1f', N'a\'", "SELECT 2"],
        ),
        (
            r"SELECT U&'d\0061t\'; SELECT 2",
            &[r"SELECT U&'d\0061t\'", "SELECT 2"],
        ),
        (
            "SELECT U&'a;''b' UESCAPE '!'; SELECT 2",
            &["SELECT U&'a;''b' UESCAPE '!'", "SELECT 2"],
        ),
        (
            "SELECT 1 AS U&\"a;\"\"b\"; SELECT 2",
            &["SELECT 1 AS U&\"a;\"\"b\"", "SELECT 2"],
        ),
        // quoted identifiers: "" is a quote, nothing else is special
        (
            "SELECT 1 AS \"a\"\";'b\"; SELECT 2",
            &["SELECT 1 AS \"a\"\";'b\"", "SELECT 2"],
        ),
        // dollar bodies: only the same tag ends one
        (
            "DO $body$ BEGIN PERFORM 1; END $body$; SELECT 2",
            &["DO $body$ BEGIN PERFORM 1; END $body$", "SELECT 2"],
        ),
        (
            "SELECT $a$ $b$; $$ $b$ $a$; SELECT 2",
            &["SELECT $a$ $b$; $$ $b$ $a$", "SELECT 2"],
        ),
        (
            "SELECT $$ -- ;\n /* ; $$; SELECT 2",
            &["SELECT $$ -- ; /* ; $$", "SELECT 2"],
        ),
        (
            "SELECT $a$x$b$a$; SELECT 2",
            &["SELECT $a$x$b$a$", "SELECT 2"],
        ),
        (
            "SELECT $ab$ $a$; $ab$; SELECT 2",
            &["SELECT $ab$ $a$; $ab$", "SELECT 2"],
        ),
        ("SELECT $é$;$é$; SELECT 2", &["SELECT $é$;$é$", "SELECT 2"]),
        // $1 is a parameter, and a $ inside a word is part of the word
        ("SELECT $1$a; SELECT 2", &["SELECT $1$a", "SELECT 2"]),
        (
            "SELECT a$b$ FROM t; SELECT $b$;$b$",
            &["SELECT a$b$ FROM t", "SELECT $b$;$b$"],
        ),
        ("SELECT 1$b$;$b$", &["SELECT 1$b$;$b$"]),
        // comments: /* */ nest, -- runs to the end of the line
        (
            "/* outer /* nested */ still; */ SELECT 1; SELECT 2",
            &["SELECT 1", "SELECT 2"],
        ),
        (
            "SELECT 1 /*/ ; */ + 2; SELECT 3",
            &["SELECT 1 + 2", "SELECT 3"],
        ),
        (
            "SELECT 1 /* a **/ + 2 /***/; SELECT 3",
            &["SELECT 1 + 2", "SELECT 3"],
        ),
        (
            "SELECT 1 -- a; b\n, 2; SELECT 3",
            &["SELECT 1 , 2", "SELECT 3"],
        ),
        ("SELECT 2 --; c\r, 3", &["SELECT 2 , 3"]),
        ("SELECT 2*/*;*/3", &["SELECT 2* 3"]),
        ("SELECT 1 - -2", &["SELECT 1 - -2"]),
        // parentheses
        (
            "CREATE RULE r AS ON INSERT TO t DO ALSO (NOTIFY a; NOTIFY b); SELECT 2",
            &[
                "CREATE RULE r AS ON INSERT TO t DO ALSO (NOTIFY a; NOTIFY b)",
                "SELECT 2",
            ],
        ),
        (
            "SELECT ((1); 2)); SELECT 3",
            &["SELECT ((1); 2))", "SELECT 3"],
        ),
        ("SELECT 1); SELECT 2", &["SELECT 1)", "SELECT 2"]),
        // SQL-standard bodies of CREATE [OR REPLACE] FUNCTION|PROCEDURE, CASE … END nested
        (
            "CREATE FUNCTION f(a int) RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT a + 1; END; SELECT 2",
            &[
                "CREATE FUNCTION f(a int) RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT a + 1; END",
                "SELECT 2",
            ],
        ),
        (
            "create or replace procedure p() language sql begin atomic insert into t values (1); \
             select case when true then 1 else 2 end; end; select 2",
            &[
                "create or replace procedure p() language sql begin atomic insert into t values (1); \
                 select case when true then 1 else 2 end; end",
                "select 2",
            ],
        ),
        (
            "CREATE FUNCTION f() RETURNS int BEGIN ATOMIC SELECT (CASE WHEN true THEN 1 END); END; SELECT 2",
            &[
                "CREATE FUNCTION f() RETURNS int BEGIN ATOMIC SELECT (CASE WHEN true THEN 1 END); END",
                "SELECT 2",
            ],
        ),
        ("CASE; END; SELECT 1", &["CASE", "END", "SELECT 1"]),
        (
            "BEGIN; SELECT 1; END; COMMIT",
            &["BEGIN", "SELECT 1", "END", "COMMIT"],
        ),
        (
            "CREATE TABLE t (begin int); SELECT 2",
            &["CREATE TABLE t (begin int)", "SELECT 2"],
        ),
        (
            "CREATE TRIGGER begin; SELECT 2",
            &["CREATE TRIGGER begin", "SELECT 2"],
        ),
        (
            "CREATE FUNCTION f() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$; SELECT 2",
            &[
                "CREATE FUNCTION f() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$",
                "SELECT 2",
            ],
        ),
        (
            "CREATE FUNCTION f() RETURNS int LANGUAGE sql RETURN 1; BEGIN; SELECT 2",
            &[
                "CREATE FUNCTION f() RETURNS int LANGUAGE sql RETURN 1",
                "BEGIN",
                "SELECT 2",
            ],
        ),
        // non-ASCII words
        (
            "SELECT café, ünï'x'; SELECT 2",
            &["SELECT café, ünï'x'", "SELECT 2"],
        ),
    ];
    for (sql, expected) in cases {
        assert_eq!(lines(sql), *expected, "splitting {sql:?}");
    }
}

#[test]
fn keeps_line_numbers_and_removes_comments() {
    let sql = "-- header\n\nCREATE TABLE t (\n  a int -- the key\n);\n/* x */ CREATE INDEX i\n  ON t(a); SELECT ';'";
    let s = split(sql).unwrap();
    assert_eq!(s.len(), 3, "{s:?}");
    assert_eq!((s[0].line, s[0].end_line), (3, 5));
    assert_eq!(s[0].text, "CREATE TABLE t (\n  a int  \n)");
    assert_eq!((s[1].line, s[1].end_line), (6, 7));
    assert_eq!(s[1].text, "CREATE INDEX i\n  ON t(a)");
    assert_eq!(
        (s[2].line, s[2].end_line, s[2].text.as_str()),
        (7, 7, "SELECT ';'")
    );
    let body = split("DO $$\nBEGIN\n  -- kept in the body\nEND\n$$;\n").unwrap();
    assert_eq!(body[0].text, "DO $$\nBEGIN\n  -- kept in the body\nEND\n$$");
    assert_eq!((body[0].line, body[0].end_line), (1, 5));
}

#[test]
fn an_unclosed_construct_is_an_error_naming_its_line() {
    let cases: &[(&str, usize, Unclosed, &str)] = &[
        (
            "SELECT 'abc",
            1,
            Unclosed::QuotedString,
            "unterminated quoted string starting at line 1",
        ),
        ("SELECT 1;\nSELECT 'a''", 2, Unclosed::QuotedString, ""),
        (
            "SELECT 1;\nSELECT E'a\\'",
            2,
            Unclosed::EscapeString,
            "unterminated escape string E'…' starting at line 2",
        ),
        ("SELECT E'a'\n'b", 1, Unclosed::EscapeString, ""),
        ("SELECT U&'a", 1, Unclosed::QuotedString, ""),
        (
            "\n\nSELECT \"abc",
            3,
            Unclosed::QuotedIdentifier,
            "unterminated quoted identifier \"…\" starting at line 3",
        ),
        ("SELECT U&\"a\"\"", 1, Unclosed::QuotedIdentifier, ""),
        (
            "SELECT 1;\n\nDO $body$ BEGIN\n END $bod$;",
            3,
            Unclosed::DollarBody("$body$".into()),
            "unterminated dollar-quoted string $body$ starting at line 3",
        ),
        ("SELECT $$", 1, Unclosed::DollarBody("$$".into()), ""),
        (
            "SELECT 1;\n/* a /* b */ SELECT 1;",
            2,
            Unclosed::BlockComment,
            "unterminated /* comment starting at line 2",
        ),
        ("SELECT 1 /*", 1, Unclosed::BlockComment, ""),
        (
            "SELECT 1;\nSELECT (1;\nSELECT (2);",
            2,
            Unclosed::Parenthesis,
            "unclosed parenthesis ( starting at line 2",
        ),
        (
            "CREATE FUNCTION f() RETURNS int LANGUAGE sql\nBEGIN ATOMIC SELECT 1;\nSELECT 2;",
            2,
            Unclosed::AtomicBody,
            "unterminated BEGIN ATOMIC body (no matching END) starting at line 2",
        ),
        (
            "CREATE FUNCTION f() BEGIN ATOMIC SELECT CASE WHEN true THEN 1 END;",
            1,
            Unclosed::AtomicBody,
            "",
        ),
    ];
    for (sql, line, what, message) in cases {
        let err = split(sql).expect_err(sql);
        assert_eq!((err.line, &err.what), (*line, what), "{sql:?}");
        if !message.is_empty() {
            assert_eq!(err.to_string(), *message);
        }
    }
    // A comment running to the end of the file closes there.
    assert_eq!(lines("SELECT 1 -- no newline"), ["SELECT 1"]);
}
