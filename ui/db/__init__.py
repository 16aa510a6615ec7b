"""The server's database: connection, peewee models and ordered schema migrations."""

from simpletuner.ui.db.connection import open_database
from simpletuner.ui.db.migrations import migrate
from simpletuner.ui.db.models import ALL_MODELS, bind_models

__all__ = ["ALL_MODELS", "bind_models", "migrate", "open_database"]
