"""Headless provisioning on the server host: users and API keys written straight to the database."""

from __future__ import annotations

import time

from simpletuner.core.errors import SimpleTunerError
from simpletuner.core.workspace import Workspace
from simpletuner.ui.auth import audit
from simpletuner.ui.auth.apikeys import create_api_key
from simpletuner.ui.auth.credentials import PASSWORD_POLICY, hash_password, password_problem
from simpletuner.ui.auth.permissions import ADMIN_LEVEL
from simpletuner.ui.auth.sessions import end_user_sessions
from simpletuner.ui.auth.users import AccountError, create_user, find_user
from simpletuner.ui.db.connection import open_database
from simpletuner.ui.db.migrations import migrate
from simpletuner.ui.db.models import bind_models
from simpletuner.ui.http import EMAIL_RE, USERNAME_RE, USERNAME_RULE

CLI_ACTOR = "cli"


class Provisioner:
    """Opens (and migrates) the server database for one CLI command."""

    def __init__(self, workspace: Workspace, database_url: str | None) -> None:
        self.database = open_database(database_url, workspace.root)

    def __enter__(self) -> Provisioner:
        self.database.connect()
        migrate(self.database)
        bind_models(self.database)
        return self

    def __exit__(self, *exc: object) -> None:
        self.database.close()

    def create_user(self, username: str, email: str, password: str, levels: list[str]) -> None:
        """Create a local user; SimpleTunerError with the reason otherwise."""
        if not USERNAME_RE.match(username):
            raise SimpleTunerError(f"--username {username!r} is not valid: {USERNAME_RULE}")
        if not EMAIL_RE.match(email):
            raise SimpleTunerError(f"--email {email!r} is not an email address")
        problem = password_problem(password, username, email)
        if problem:
            raise SimpleTunerError(f"{problem} (policy: {PASSWORD_POLICY})")
        with self.database.atomic():
            create_user(username=username, email=email, password=password, levels=levels, now=time.time())
            audit.record("user_created", actor=CLI_ACTOR, target=username, detail={"levels": levels})

    def reset_password(self, username: str, password: str) -> None:
        """Set a local user's password and end their sessions."""
        user = self._user(username)
        if user.auth_source != "local":
            raise SimpleTunerError(f"{username} logs in through {user.auth_source}; change the password there")
        problem = password_problem(password, user.username, user.email)
        if problem:
            raise SimpleTunerError(f"{problem} (policy: {PASSWORD_POLICY})")
        user.password_hash = hash_password(password)
        user.updated_at = time.time()
        user.save()
        end_user_sessions(user.id)
        audit.record("password_reset", actor=CLI_ACTOR, target=username)

    def create_api_key(self, username: str, name: str, expires_days: float | None) -> str:
        """A new key for ``username`` (returned once)."""
        user = self._user(username)
        key, row = create_api_key(user=user, name=name, now=time.time(), expires_days=expires_days,
                                  created_by=CLI_ACTOR)
        audit.record("apikey_created", actor=CLI_ACTOR, target=f"{username}:{row.prefix}", detail={"name": name})
        return key

    def _user(self, username: str):  # type: ignore[no-untyped-def]
        user = find_user(username)
        if user is None:
            raise SimpleTunerError(f"no user named {username!r}; create one with 'simpletuner users create'")
        return user


def levels_for(admin: bool, level: str | None) -> list[str]:
    """The levels ``users create`` assigns: --admin, --level, or viewer."""
    if admin and level and level != ADMIN_LEVEL:
        raise SimpleTunerError("give --admin or --level, not both")
    return [ADMIN_LEVEL] if admin else [level or "viewer"]


__all__ = ["AccountError", "Provisioner", "levels_for"]
