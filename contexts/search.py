"""Full-text search over messages, by database backend.

- SQLite: an external-content FTS5 table `contexts_message_fts(content, context_id)` kept
  in sync by triggers. The context's primary key is indexed as a second column, so a
  search is the intersection of two posting lists (`context_id:123 AND (terms)`), not a
  scan of the context; ranked by bm25 over the content column only.
- PostgreSQL: a stored generated `search_vector tsvector` column with a GIN index;
  ranked by `ts_rank_cd`.
- Other backends: a bounded `icontains` query (no ranking beyond term counts).

The DDL lives here so migrations and tests share one text.
"""

import re
from dataclasses import dataclass

from django.db import connection

SQLITE_FTS_TABLE = (
    "CREATE VIRTUAL TABLE IF NOT EXISTS contexts_message_fts USING fts5("
    "content, context_id, content='contexts_message', content_rowid='id', "
    "tokenize='porter unicode61')"
)
SQLITE_FTS_TRIGGERS = [
    "CREATE TRIGGER IF NOT EXISTS contexts_message_fts_ai AFTER INSERT ON contexts_message "
    "BEGIN INSERT INTO contexts_message_fts(rowid, content, context_id) "
    "VALUES (new.id, new.content, new.context_id); END",
    "CREATE TRIGGER IF NOT EXISTS contexts_message_fts_ad AFTER DELETE ON contexts_message "
    "BEGIN INSERT INTO contexts_message_fts(contexts_message_fts, rowid, content, context_id) "
    "VALUES ('delete', old.id, old.content, old.context_id); END",
    "CREATE TRIGGER IF NOT EXISTS contexts_message_fts_au "
    "AFTER UPDATE OF content, context_id ON contexts_message "
    "BEGIN INSERT INTO contexts_message_fts(contexts_message_fts, rowid, content, context_id) "
    "VALUES ('delete', old.id, old.content, old.context_id); "
    "INSERT INTO contexts_message_fts(rowid, content, context_id) "
    "VALUES (new.id, new.content, new.context_id); END",
]
SQLITE_FTS_REBUILD = "INSERT INTO contexts_message_fts(contexts_message_fts) VALUES ('rebuild')"
SQLITE_FTS_DROP = [
    "DROP TRIGGER IF EXISTS contexts_message_fts_ai",
    "DROP TRIGGER IF EXISTS contexts_message_fts_ad",
    "DROP TRIGGER IF EXISTS contexts_message_fts_au",
    "DROP TABLE IF EXISTS contexts_message_fts",
]

POSTGRES_FTS = [
    "ALTER TABLE contexts_message ADD COLUMN IF NOT EXISTS search_vector tsvector "
    "GENERATED ALWAYS AS (to_tsvector('english'::regconfig, content)) STORED",
    "CREATE INDEX IF NOT EXISTS contexts_message_search_idx "
    "ON contexts_message USING GIN (search_vector)",
]
POSTGRES_FTS_DROP = [
    "DROP INDEX IF EXISTS contexts_message_search_idx",
    "ALTER TABLE contexts_message DROP COLUMN IF EXISTS search_vector",
]

# Terms are words; everything else in a query is ignored, so no query syntax leaks through.
_TERM = re.compile(r"\w+", re.UNICODE)
MAX_TERMS = 32


@dataclass(frozen=True)
class SearchHit:
    message_pk: int
    score: float


def query_terms(query: str) -> list[str]:
    seen: list[str] = []
    for term in _TERM.findall(query.lower()):
        if term not in seen:
            seen.append(term)
    return seen[:MAX_TERMS]


def search_message_pks(*, context_pk: int, query: str, limit: int) -> list[SearchHit]:
    """Message primary keys of the context matching any term of `query`, best first, with
    a relevance score (higher is better). One query."""
    terms = query_terms(query)
    if not terms or limit <= 0:
        return []
    if connection.vendor == "sqlite":
        return _search_sqlite(context_pk=context_pk, terms=terms, limit=limit)
    if connection.vendor == "postgresql":
        return _search_postgres(context_pk=context_pk, terms=terms, limit=limit)
    return _search_fallback(context_pk=context_pk, terms=terms, limit=limit)


def _search_sqlite(*, context_pk: int, terms: list[str], limit: int) -> list[SearchHit]:
    words = " OR ".join('"' + term.replace('"', "") + '"' for term in terms)
    match = f'context_id:"{int(context_pk)}" AND ({words})'
    sql = (
        "SELECT rowid, bm25(contexts_message_fts, 1.0, 0.0) AS rank "
        "FROM contexts_message_fts WHERE contexts_message_fts MATCH %s "
        "ORDER BY rank, rowid DESC LIMIT %s"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [match, limit])
        rows = cursor.fetchall()
    # bm25 is negative, lower is better: the score is its negation.
    return [SearchHit(int(pk), round(-float(rank), 6)) for pk, rank in rows]


def _search_postgres(*, context_pk: int, terms: list[str], limit: int) -> list[SearchHit]:
    # websearch_to_tsquery never raises on user input; "or" joins the terms.
    text = " or ".join(term for term in terms if term != "or")
    sql = (
        "SELECT id, ts_rank_cd(search_vector, q) AS score "
        "FROM contexts_message, websearch_to_tsquery('english'::regconfig, %s) AS q "
        "WHERE context_id = %s AND search_vector @@ q "
        "ORDER BY score DESC, seq DESC LIMIT %s"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [text, context_pk, limit])
        rows = cursor.fetchall()
    return [SearchHit(int(pk), round(float(score), 6)) for pk, score in rows]


FALLBACK_SCAN_LIMIT = 2000


def _search_fallback(*, context_pk: int, terms: list[str], limit: int) -> list[SearchHit]:
    from django.db.models import Q

    from contexts.models import Message

    condition = Q()
    for term in terms:
        condition |= Q(content__icontains=term)
    candidates = Message.objects.filter(condition, context_id=context_pk).order_by("-seq")
    hits = []
    for pk, content in candidates.values_list("pk", "content")[:FALLBACK_SCAN_LIMIT]:
        lowered = content.lower()
        hits.append(SearchHit(pk, float(sum(lowered.count(term) for term in terms))))
    hits.sort(key=lambda hit: -hit.score)
    return hits[:limit]
