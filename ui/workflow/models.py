"""Per-user workflow state: the environment each user works on."""

from __future__ import annotations

import peewee

from simpletuner.ui.db.models import BaseModel, User
from simpletuner.ui.workflow.ownership import EnvironmentRecord


class UserPreference(BaseModel):
    """One user's UI state; ``active_environment`` is the environment the header switcher selected."""

    user = peewee.ForeignKeyField(User, unique=True, on_delete="CASCADE", backref="preference")
    active_environment = peewee.CharField(max_length=100, null=True)
    updated_at = peewee.DoubleField()

    class Meta:
        table_name = "user_preferences"


WORKFLOW_MODELS: tuple[type[BaseModel], ...] = (UserPreference, EnvironmentRecord)


def active_environment(user_id: int) -> str | None:
    """The environment a user last selected (None when they never chose one)."""
    row = UserPreference.get_or_none(UserPreference.user == user_id)
    return row.active_environment if row else None


def set_active_environment(user_id: int, name: str | None, now: float) -> None:
    """Remember the environment a user selected."""
    updated = (UserPreference.update(active_environment=name, updated_at=now)
               .where(UserPreference.user == user_id).execute())
    if not updated:
        UserPreference.create(user=user_id, active_environment=name, updated_at=now)


def bind_workflow_models(database: peewee.Database) -> None:
    """Bind the workflow models to ``database`` (once per process, beside the server's own models)."""
    database.bind(list(WORKFLOW_MODELS), bind_refs=False, bind_backrefs=False)
