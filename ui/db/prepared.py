"""Statements built once and run as plain SQL: for the queries every request makes.

Building a statement with peewee (walking the expression tree, quoting every column) costs far more than SQLite
takes to run it: for a 35-column select, about 0.3 ms against a few microseconds. The hot queries (who is asking,
the training status) always have the same shape, so each is built once per database dialect and then executed
with its parameters.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

import peewee

_statements: dict[tuple[type, str], tuple[str, tuple[Any, ...]]] = {}
_lock = threading.Lock()


def statement(database: peewee.Database, name: str,
              build: Callable[[], peewee.Query]) -> tuple[str, tuple[Any, ...]]:
    """The SQL and parameters of ``build()`` on ``database``'s dialect, built on first use.

    ``name`` identifies the statement; ``build`` must return the same query each time (parameters included), as
    it runs once per dialect and process. Placeholder parameters a caller substitutes are part of the returned
    tuple, in order.
    """
    key = (type(database), name)
    found = _statements.get(key)
    if found is None:
        sql, params = database.get_sql_context().sql(build()).query()
        found = (sql, tuple(params))
        with _lock:
            _statements[key] = found
    return found


def run(database: peewee.Database, sql: str, params: Sequence[Any]) -> list[dict[str, Any]]:
    """Execute ``sql`` and return its rows as dictionaries keyed by column name."""
    cursor = database.execute_sql(sql, tuple(params))
    columns = [d[0] for d in cursor.description]
    return [dict(zip(columns, values, strict=True)) for values in cursor.fetchall()]


def models(model: type[peewee.Model], sql: str, params: Sequence[Any]) -> list[Any]:
    """Execute a select of ``model``'s columns and return model instances (field types converted as usual)."""
    return list(model.raw(sql, *params))
