"""Field types shared by the models and the frozen schemas of migrations."""

from __future__ import annotations

import json
from typing import Any

import peewee


class JSONTextField(peewee.TextField):
    """A JSON document stored as text (portable across SQLite and PostgreSQL)."""

    def db_value(self, value: Any) -> str | None:
        return None if value is None else json.dumps(value, sort_keys=True)

    def python_value(self, value: str | None) -> Any:
        return None if value is None else json.loads(value)
