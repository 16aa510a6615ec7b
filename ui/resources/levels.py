"""Permission levels: the built-ins (fixed) and custom levels built from fine-grained permissions."""

from __future__ import annotations

from typing import Any

import falcon
import peewee

from simpletuner.ui.auth.permissions import PERMISSIONS, level_permissions
from simpletuner.ui.db.models import Level, UserLevel
from simpletuner.ui.http import NAME_RE, NAME_RULE, TEXT_RE, TEXT_RULE, bad_request, field, only_keys, read_json
from simpletuner.ui.resources.base import Resource, send_json

MANAGE = "levels.manage"


def level_to_json(level: Level, users: int) -> dict[str, Any]:
    """A level with its effective permissions and how many users hold it."""
    return {"name": level.name, "description": level.description, "builtin": level.builtin, "rank": level.rank,
            "permissions": sorted(level_permissions(level.name, level.builtin, level.permissions)), "users": users}


def permission_list(data: dict[str, Any]) -> list[str]:
    """The ``permissions`` field: known permission names."""
    value = data.get("permissions")
    if not isinstance(value, list) or not all(isinstance(p, str) for p in value):
        raise bad_request("permissions must be a list of permission names")
    unknown = sorted(set(value) - set(PERMISSIONS))
    if unknown:
        raise bad_request(f"unknown permission(s) {', '.join(unknown)}; known: {', '.join(PERMISSIONS)}")
    return sorted(set(value))


def _counts() -> dict[int, int]:
    query = UserLevel.select(UserLevel.level, peewee.fn.COUNT(UserLevel.id)).group_by(UserLevel.level).tuples()
    return dict(query)


class Permissions(Resource):
    """``GET /api/permissions``: every permission with its description."""

    permissions = {"GET": ("levels.manage", "users.manage")}

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        send_json(resp, {"permissions": [{"name": k, "description": v} for k, v in PERMISSIONS.items()]})


class Levels(Resource):
    """``GET /api/levels``; ``POST /api/levels`` ``{name, description, permissions}`` creates a custom level."""

    permissions = {"GET": ("levels.manage", "users.manage"), "POST": MANAGE}

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        counts = _counts()
        send_json(resp, {"levels": [level_to_json(lvl, counts.get(lvl.id, 0))
                                    for lvl in Level.select().order_by(Level.rank, Level.name)]})

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        data = read_json(req, self.ctx.settings.max_body_bytes)
        only_keys(data, {"name", "description", "permissions"})
        name = field(data, "name", NAME_RE, what=NAME_RULE)
        description = field(data, "description", TEXT_RE, required=False, what=TEXT_RULE) or ""
        permissions = permission_list(data)
        try:
            level = Level.create(name=name, description=description, builtin=False, rank=0, permissions=permissions)
        except peewee.IntegrityError:
            raise falcon.HTTPConflict(description=f"a level named {name!r} already exists") from None
        self.audit(req, "level_created", target=name, detail={"permissions": permissions})
        send_json(resp, {"level": level_to_json(level, 0)}, 201)


class LevelItem(Resource):
    """``PATCH/DELETE /api/levels/{name}``: custom levels only; a level still held by users cannot be deleted."""

    permissions = {"PATCH": MANAGE, "DELETE": MANAGE}

    def _custom(self, name: str) -> Level:
        level = Level.get_or_none(Level.name == name)
        if level is None:
            raise falcon.HTTPNotFound(description=f"no level named {name!r}")
        if level.builtin:
            raise falcon.HTTPConflict(description=f"{name!r} is a built-in level and cannot be changed or deleted")
        return level

    def on_patch(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        data = read_json(req, self.ctx.settings.max_body_bytes)
        only_keys(data, {"description", "permissions"})
        level = self._custom(name)
        if "description" in data:
            level.description = field(data, "description", TEXT_RE, required=False, what=TEXT_RULE) or ""
        if "permissions" in data:
            level.permissions = permission_list(data)
        level.save()
        self.audit(req, "level_changed", target=name, detail={"permissions": level.permissions})
        send_json(resp, {"level": level_to_json(level, _counts().get(level.id, 0))})

    def on_delete(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        level = self._custom(name)
        holders = UserLevel.select().where(UserLevel.level == level.id).count()
        if holders:
            raise falcon.HTTPConflict(description=f"{holders} user(s) hold {name!r}; give them another level first")
        level.delete_instance()
        self.audit(req, "level_deleted", target=name)
        send_json(resp, {"deleted": name})
