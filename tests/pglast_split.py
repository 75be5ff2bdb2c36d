"""How libpg_query (PostgreSQL's own parser, via pglast) splits SQL, for tests/tests/it/sql_split.rs.

Reads JSON lines {"sql": file, "mine": [statement, ...]} on stdin and answers one JSON line each:
{"theirs": [[token, ...], ...], "mine": [[token, ...], ...]} or {"error": "..."}. Statements are
compared as token sequences from PostgreSQL's scanner, so comments and whitespace do not count.
"""

import json
import sys

import pglast
from pglast import parser

COMMENTS = {"C_COMMENT", "SQL_COMMENT"}


def tokens(sql):
    # pglast gives the scanner's offsets in characters, end inclusive.
    return [sql[t.start : t.end + 1] for t in parser.scan(sql) if t.name not in COMMENTS]


def answer(request):
    try:
        theirs = [tokens(s) for s in pglast.split(request["sql"], with_parser=True)]
    except Exception as e:  # a file the server's parser rejects: say why
        return {"error": f"libpg_query: {type(e).__name__}: {e}"}
    try:
        mine = [tokens(s) for s in request["mine"]]
    except Exception as e:
        return {"error": f"scanning init-fn's statements: {type(e).__name__}: {e}"}
    return {"theirs": theirs, "mine": mine}


def main():
    for line in sys.stdin:
        print(json.dumps(answer(json.loads(line))), flush=False)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
