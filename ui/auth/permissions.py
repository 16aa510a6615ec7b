"""Permissions, the built-in levels, and what a route may require.

Built-in levels take their permissions from :data:`BUILTIN_LEVEL_PERMISSIONS` (code, not the database), so a
release that adds a permission gives it to the right built-in levels without a data migration. Custom levels store
their own list.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import attrs

#: Every permission a level can grant, with what it allows.
PERMISSIONS: Mapping[str, str] = {
    "config.view": "See training environments, configurations, jobs and results",
    "config.edit": "Create environments, and edit, rename, delete and start one's own and those shared with one",
    "config.edit.default": "Edit the default environment that other environments merge",
    "config.edit.all": "Edit, rename, delete, share and start anyone's environments",
    "config.trusted": "Set, change and approve privileged options: commands, and endpoints that receive credentials "
                      "or data",
    "dataset.upload": "Upload and delete datasets",
    "job.start": "Start training jobs",
    "job.stop.own": "Stop one's own training jobs",
    "job.stop.all": "Stop anyone's training jobs",
    "job.reorder": "Reorder the queue of waiting training jobs",
    "apikeys.own": "Create and revoke one's own API keys",
    "users.manage": "Create, edit, deactivate and delete users and assign levels",
    "levels.manage": "Create, edit and delete custom levels",
    "providers.manage": "Configure login providers",
    "settings.manage": "Change server settings such as self-registration",
    "audit.view": "Read the security audit log",
}

_VIEWER = ("config.view",)
_RESEARCHER = _VIEWER + ("config.edit", "dataset.upload", "job.start", "job.stop.own", "apikeys.own")
_LEAD = _RESEARCHER + ("config.edit.default", "job.stop.all", "job.reorder")

#: Built-in levels in rank order; admin has every permission.
BUILTIN_LEVEL_PERMISSIONS: Mapping[str, frozenset[str]] = {
    "viewer": frozenset(_VIEWER),
    "researcher": frozenset(_RESEARCHER),
    "lead": frozenset(_LEAD),
    "admin": frozenset(PERMISSIONS),
}

ADMIN_LEVEL = "admin"

#: Route requirement: anyone, including anonymous clients.
PUBLIC = "public"
#: Route requirement: any logged-in user or valid API key, whatever their level.
AUTHENTICATED = "authenticated"

#: What a responder needs: PUBLIC, AUTHENTICATED, one permission, or a tuple of permissions (any one suffices).
Requirement = str | tuple[str, ...]


def level_permissions(name: str, builtin: bool, stored: Iterable[str] | None) -> frozenset[str]:
    """The permissions a level grants (unknown names in stored lists are ignored)."""
    if builtin:
        return BUILTIN_LEVEL_PERMISSIONS.get(name, frozenset())
    return frozenset(p for p in (stored or ()) if p in PERMISSIONS)


def check_requirement(requirement: Requirement) -> None:
    """Raise ValueError for a requirement naming an unknown permission (caught when the app is built)."""
    names = requirement if isinstance(requirement, tuple) else (requirement,)
    for name in names:
        if name not in PERMISSIONS and name not in (PUBLIC, AUTHENTICATED):
            raise ValueError(f"unknown permission {name!r} in a route requirement")


@attrs.frozen
class Principal:
    """Who is making a request: a user through a session cookie or an API key, with their effective permissions."""

    user_id: int
    username: str
    permissions: frozenset[str]
    levels: tuple[str, ...]
    via: str  # "session" or "api_key"
    csrf_token: str | None = None
    session_hash: str | None = None
    api_key_id: int | None = None

    def allows(self, requirement: Requirement) -> bool:
        """True when the principal meets ``requirement``."""
        if requirement in (PUBLIC, AUTHENTICATED):
            return True
        names = requirement if isinstance(requirement, tuple) else (requirement,)
        return any(name in self.permissions for name in names)

    @property
    def is_admin(self) -> bool:
        """Holds the built-in admin level."""
        return ADMIN_LEVEL in self.levels

    def to_json(self) -> dict[str, Any]:
        """Identity and permissions for ``GET /api/auth/me``."""
        return {
            "id": self.user_id,
            "username": self.username,
            "levels": list(self.levels),
            "permissions": sorted(self.permissions),
            "via": self.via,
        }


def principal_from_rows(rows: list[dict[str, Any]], via: str, scopes: Iterable[str] | None = None,
                        **extra: Any) -> Principal:
    """Build a principal from rows of a user joined with their levels (one row per level, or one with none)."""
    first = rows[0]
    permissions: set[str] = set()
    levels: list[str] = []
    for row in rows:
        if row.get("level_name") is None:
            continue
        levels.append(row["level_name"])
        permissions |= level_permissions(row["level_name"], bool(row["level_builtin"]), row["level_permissions"])
    granted = frozenset(permissions)
    if scopes is not None:
        granted &= frozenset(scopes)  # a key never grants more than its owner currently has
    return Principal(user_id=first["user_id"], username=first["username"], permissions=granted,
                     levels=tuple(sorted(levels)), via=via, **extra)
