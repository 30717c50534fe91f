"""Runs SQL statements (a JSON list on stdin) in one chdb session — an embedded current ClickHouse —
and prints the rows of the last statement as JSON lines. Used to check that the store's SQL also
works on modern ClickHouse, which these machines cannot run as a server."""
import json
import sys

from chdb import session

statements = json.load(sys.stdin)
s = session.Session()
result = None
for sql in statements:
    result = s.query(sql, "JSONEachRow")
print(str(result).strip())
