"""Where a string shows in what a role may read of a database: every relation and column it
may select (the catalogs, information_schema, its own and granted schemas), and the text
PostgreSQL renders for definitions (views, rules, functions, constraints, defaults,
indexes, triggers), which the catalogs keep as node trees that print a constant's bytes as
numbers, not as text.
"""

from __future__ import annotations

import psycopg
from psycopg import sql

# Each query gives (place, text) for every definition the role may render.
_DEFINITIONS = {
    "pg_get_viewdef": """
        SELECT c.oid::regclass::text, pg_catalog.pg_get_viewdef(c.oid)
          FROM pg_catalog.pg_class c WHERE c.relkind IN ('v', 'm')""",
    "pg_get_ruledef": """
        SELECT r.rulename::text, pg_catalog.pg_get_ruledef(r.oid) FROM pg_catalog.pg_rewrite r""",
    # Every function but the built-in ones (aggregates have no such definition).
    "pg_get_functiondef": """
        SELECT p.oid::regprocedure::text, pg_catalog.pg_get_functiondef(p.oid)
          FROM pg_catalog.pg_proc p
         WHERE p.prokind IN ('f', 'p') AND p.oid >= 16384""",
    "pg_get_constraintdef": """
        SELECT c.conname::text, pg_catalog.pg_get_constraintdef(c.oid)
          FROM pg_catalog.pg_constraint c""",
    "pg_get_expr (defaults)": """
        SELECT d.adrelid::regclass::text, pg_catalog.pg_get_expr(d.adbin, d.adrelid)
          FROM pg_catalog.pg_attrdef d""",
    "pg_get_indexdef": """
        SELECT i.indexrelid::regclass::text, pg_catalog.pg_get_indexdef(i.indexrelid)
          FROM pg_catalog.pg_index i""",
    "pg_get_triggerdef": """
        SELECT t.tgname::text, pg_catalog.pg_get_triggerdef(t.oid) FROM pg_catalog.pg_trigger t""",
}


def places_naming(conn: psycopg.Connection, text: str) -> tuple[list[str], int]:
    """Every place the role of ``conn`` (autocommit off or on) may read that holds ``text``,
    and how many places (relations and definition kinds) were searched.  A relation the
    role may read that fails to read fails the search: it was not searched."""
    relations = conn.execute(
        """SELECT c.oid::regclass::text,
                  array_agg(quote_ident(a.attname) ORDER BY a.attnum)
             FROM pg_catalog.pg_class c
             JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
             JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid
            WHERE c.relkind IN ('r', 'v', 'm', 'f', 'p') AND a.attnum > 0
              AND NOT a.attisdropped
              AND pg_catalog.has_schema_privilege(n.oid, 'USAGE')
              AND pg_catalog.has_column_privilege(c.oid, a.attnum, 'SELECT')
            GROUP BY c.oid"""
    ).fetchall()
    found = []
    for relation, columns in relations:
        query = sql.SQL(
            "SELECT count(*) FROM (SELECT {} FROM {}) x WHERE strpos(x::text, %s) > 0"
        ).format(sql.SQL(", ").join(map(sql.SQL, columns)), sql.SQL(relation))
        with conn.transaction():
            (count,) = conn.execute(query, (text,)).fetchone()
        if count:
            found.append(relation)
    for kind, query in _DEFINITIONS.items():
        with conn.transaction():
            for place, definition in conn.execute(query):
                if definition and text in definition:
                    found.append(f"{kind}: {place}")
    return found, len(relations) + len(_DEFINITIONS)
