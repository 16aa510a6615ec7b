"""What every resource shares: the injected collaborators of one app."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import attrs
import jinja2
import peewee

from simpletuner.core.plugins import Registry
from simpletuner.core.workspace import Workspace
from simpletuner.ui.auth.providers import ProviderInstances
from simpletuner.ui.db.models import User
from simpletuner.ui.settings import ServerSettings

TrainingStatus = Callable[[], dict[str, Any]]


def idle_status() -> dict[str, Any]:
    """The training status while no job runner is attached to the server."""
    return {"status": "idle", "job": None, "runner": "not available in this version"}


@attrs.define
class AppContext:
    """Collaborators and settings of one app instance (one per worker process)."""

    database: peewee.Database
    registry: Registry
    workspace: Workspace
    settings: ServerSettings
    templates: jinja2.Environment
    providers: ProviderInstances
    training_status: TrainingStatus = idle_status
    clock: Callable[[], float] = time.time
    _has_users: bool = False

    def now(self) -> float:
        """The current time (injectable for tests of expiry)."""
        return self.clock()

    def has_users(self) -> bool:
        """Whether setup is done. Once true it stays true (the last admin cannot be deleted), so it is cached."""
        if not self._has_users:
            self._has_users = User.select().exists()
        return self._has_users
