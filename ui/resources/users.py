"""Managing users: list, create, edit (email, name, active, levels), delete, and admin password reset."""

from __future__ import annotations

from typing import Any

import falcon

from simpletuner.ui.auth.credentials import PASSWORD_POLICY, hash_password, password_problem
from simpletuner.ui.auth.sessions import end_user_sessions
from simpletuner.ui.auth.users import (
    AccountError,
    create_user,
    ensure_not_last_admin,
    set_user_levels,
    user_to_json,
)
from simpletuner.ui.db.models import Level, User, UserLevel
from simpletuner.ui.http import (
    EMAIL_RE,
    EMAIL_RULE,
    TEXT_RE,
    TEXT_RULE,
    USERNAME_RE,
    USERNAME_RULE,
    bad_request,
    boolean,
    field,
    only_keys,
    read_json,
)
from simpletuner.ui.resources.base import Resource, http_error, send_json
from simpletuner.ui.workflow import publisher_logins

MANAGE = "users.manage"


def level_list(data: dict[str, Any]) -> list[str]:
    """The ``levels`` field: a non-empty list of level names."""
    levels = data.get("levels")
    if not isinstance(levels, list) or not levels or not all(isinstance(x, str) for x in levels):
        raise bad_request("levels must be a non-empty list of level names")
    return levels


def all_user_levels() -> dict[int, list[str]]:
    """Level names of every user in one query."""
    out: dict[int, list[str]] = {}
    query = (UserLevel.select(UserLevel.user, Level.name).join(Level)
             .order_by(Level.rank, Level.name).tuples())
    for user_id, name in query:
        out.setdefault(user_id, []).append(name)
    return out


class Users(Resource):
    """``GET /api/users``, ``POST /api/users`` ``{username, email, password, levels[, display_name]}``."""

    permissions = {"GET": MANAGE, "POST": MANAGE}

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        levels = all_user_levels()
        send_json(resp, {"users": [user_to_json(u, levels.get(u.id, [])) for u in User.select().order_by(User.id)]})

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        data = read_json(req, self.ctx.settings.max_body_bytes)
        only_keys(data, {"username", "email", "password", "levels", "display_name"})
        username = field(data, "username", USERNAME_RE, what=USERNAME_RULE)
        email = field(data, "email", EMAIL_RE, required=False, what=EMAIL_RULE)
        display_name = field(data, "display_name", TEXT_RE, required=False, what=TEXT_RULE)
        assert username is not None
        problem = password_problem(data.get("password"), username, email)
        if problem:
            raise bad_request(f"{problem} (policy: {PASSWORD_POLICY})")
        levels = level_list(data)
        try:
            with self.ctx.database.atomic():
                user = create_user(username=username, email=email, password=data["password"], levels=levels,
                                   now=self.ctx.now(), rounds=self.ctx.settings.bcrypt_rounds,
                                   display_name=display_name)
        except AccountError as exc:
            raise http_error(exc) from None
        self.audit(req, "user_created", target=username, detail={"levels": levels})
        send_json(resp, {"user": user_to_json(user)}, 201)


def _user(user_id: int) -> User:
    user = User.get_or_none(User.id == user_id)
    if user is None:
        raise falcon.HTTPNotFound(description=f"no user with id {user_id}")
    return user


class UserItem(Resource):
    """``GET/PATCH/DELETE /api/users/{user_id}``; PATCH takes ``email``, ``display_name``, ``active``, ``levels``."""

    permissions = {"GET": MANAGE, "PATCH": MANAGE, "DELETE": MANAGE}

    def on_get(self, req: falcon.Request, resp: falcon.Response, user_id: int) -> None:
        send_json(resp, {"user": user_to_json(_user(user_id))})

    def on_patch(self, req: falcon.Request, resp: falcon.Response, user_id: int) -> None:
        data = read_json(req, self.ctx.settings.max_body_bytes)
        only_keys(data, {"email", "display_name", "active", "levels"})
        user = _user(user_id)
        changes: dict[str, Any] = {}
        if "email" in data:
            changes["email"] = user.email = field(data, "email", EMAIL_RE, required=False, what=EMAIL_RULE)
        if "display_name" in data:
            user.display_name = field(data, "display_name", TEXT_RE, required=False, what=TEXT_RULE)
            changes["display_name"] = user.display_name
        levels = level_list(data) if "levels" in data else None
        active = boolean(data, "active") if "active" in data else None
        try:
            with self.ctx.database.atomic():
                if active is False and user.active:
                    ensure_not_last_admin(user.id, "deactivate")
                if active is not None:
                    changes["active"] = user.active = active
                if levels is not None:
                    changes["levels"] = set_user_levels(user, levels)
                user.updated_at = self.ctx.now()
                user.save()
        except AccountError as exc:
            raise http_error(exc) from None
        if active is False:
            end_user_sessions(user.id)
        self.audit(req, "user_changed", target=user.username, detail=changes)
        send_json(resp, {"user": user_to_json(user)})

    def on_delete(self, req: falcon.Request, resp: falcon.Response, user_id: int) -> None:
        user = _user(user_id)
        try:
            with self.ctx.database.atomic():
                ensure_not_last_admin(user.id, "delete")
                user.delete_instance()  # levels, sessions, API keys and preferences go by ON DELETE CASCADE
                # Inside the transaction: when the token cannot be removed the user stays, so that a later
                # account given the same id never inherits it.
                tokens_removed = publisher_logins.log_out_everywhere(self.ctx.workspace, user.id)
        except AccountError as exc:
            raise http_error(exc) from None
        except OSError as exc:
            raise falcon.HTTPInternalServerError(
                title="Publisher token not removed",
                description=f"could not remove a stored publisher token of {user.username} ({exc.strerror}); the "
                            "user was not deleted: check the permissions of the workspace's secrets folder") from None
        self.audit(req, "user_deleted", target=user.username, detail={"tokens_removed": tokens_removed})
        send_json(resp, {"deleted": user_id})


class UserPassword(Resource):
    """``POST /api/users/{user_id}/password`` ``{password}``: an admin sets a local user's password."""

    permissions = {"POST": MANAGE}

    def on_post(self, req: falcon.Request, resp: falcon.Response, user_id: int) -> None:
        data = read_json(req, self.ctx.settings.max_body_bytes)
        only_keys(data, {"password"})
        user = _user(user_id)
        if user.auth_source != "local":
            raise falcon.HTTPConflict(description=f"{user.username} logs in through {user.auth_source}")
        problem = password_problem(data.get("password"), user.username, user.email)
        if problem:
            raise bad_request(f"{problem} (policy: {PASSWORD_POLICY})")
        user.password_hash = hash_password(data["password"], self.ctx.settings.bcrypt_rounds)
        user.updated_at = self.ctx.now()
        user.save()
        end_user_sessions(user.id)
        self.audit(req, "password_reset", target=user.username)
        send_json(resp, {"reset": True})
