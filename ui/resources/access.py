"""Who owns an environment, who it is shared with, the approval of its privileged values, and the roots paths
may reach on this server."""

from __future__ import annotations

import re
from typing import Any

import falcon

from simpletuner.core.errors import SimpleTunerError
from simpletuner.ui.db.models import User
from simpletuner.ui.http import bad_request, field, only_keys, read_json
from simpletuner.ui.resources.base import Resource, send_json
from simpletuner.ui.resources.environments import get_environment, privileged_of
from simpletuner.ui.workflow import ownership
from simpletuner.ui.workflow.path_policy import allowed_roots, check_roots, server_path_policy, set_allowed_roots

_DIGEST = re.compile(r"^[0-9a-f]{64}$")


def _users_by_name(names: Any) -> list[User]:
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names) or len(names) > 500:
        raise bad_request("users must be a list of user names")
    found = {u.username: u for u in User.select().where(User.username.in_(names))}
    missing = sorted(set(names) - set(found))
    if missing:
        raise bad_request(f"no user named {', '.join(missing)}")
    return [found[n] for n in names]


class EnvironmentAccess(Resource):
    """``GET /api/environments/{name}/access``: owner, shares, whether the caller may change it, and its privileged
    values with their approval (``approved``, ``approved_by``, ``approved_at``, and ``digest`` to approve)."""

    permissions = {"GET": "config.view"}

    def on_get(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        env = get_environment(self, name)
        record = ownership.record_of(env.name)
        values = privileged_of(self, env)
        shared = record.shared_with if record is not None else []
        names = [u.username for u in User.select().where(User.id.in_(shared))] if shared else []
        approved = ownership.is_approved(values, record)
        send_json(resp, {
            "environment": env.name,
            "owner": record.owner.username if record is not None and record.owner else None,
            "shared_with": sorted(names),
            "can_change": ownership.may_change(self.principal(req), env.name, record),
            "privileged": {part: dict(v) for part, v in values.parts.items()},
            "digest": values.digest,
            "approved": approved,
            "approved_by": record.approved_by if record is not None and approved else None,
            "approved_at": record.approved_at if record is not None and approved else None,
        })


class EnvironmentApproval(Resource):
    """``POST /api/environments/{name}/approve`` ``{digest}``: approve exactly the privileged values the caller
    reviewed (the digest from the access view); 409 when they changed since."""

    permissions = {"POST": ownership.TRUSTED}

    def on_post(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        data = read_json(req, self.ctx.settings.max_body_bytes)
        only_keys(data, {"digest"})
        digest = field(data, "digest", _DIGEST, what="the 64-character digest shown with the values")
        env = get_environment(self, name)
        values = privileged_of(self, env)
        if values.digest != digest:
            raise falcon.HTTPConflict(title="Values changed",
                                      description="the privileged values changed since you reviewed them; review "
                                                  "them again and approve the new digest")
        principal = self.principal(req)
        ownership.approve(env.name, values, principal.username, self.ctx.now())
        self.audit(req, "environment_approved", target=env.name, detail={"keys": values.keys(), "digest": digest})
        send_json(resp, {"environment": env.name, "approved": True, "digest": digest})


class EnvironmentSharing(Resource):
    """``PUT /api/environments/{name}/sharing`` ``{users: [names]}``: share with exactly these users (the owner or
    a holder of ``config.edit.all``)."""

    permissions = {"PUT": "config.edit"}

    def on_put(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        data = read_json(req, self.ctx.settings.max_body_bytes)
        only_keys(data, {"users"})
        env = get_environment(self, name)
        principal = self.principal(req)
        record = ownership.record_of(env.name)
        is_owner = record is not None and record.owner_id == principal.user_id
        if not is_owner and ownership.EDIT_ALL not in principal.permissions:
            raise falcon.HTTPForbidden(title="Not your environment",
                                       description="only the environment's owner (or an admin) chooses who shares it")
        users = _users_by_name(data.get("users"))
        if record is None:
            ownership.set_owner(env.name, None, self.ctx.now())
        ownership.share(env.name, [u.id for u in users])
        self.audit(req, "environment_shared", target=env.name, detail={"users": [u.username for u in users]})
        send_json(resp, {"environment": env.name, "shared_with": sorted(u.username for u in users)})


class EnvironmentOwner(Resource):
    """``PUT /api/environments/{name}/owner`` ``{owner: name|null}``: give an environment to a user."""

    permissions = {"PUT": ownership.EDIT_ALL}

    def on_put(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        data = read_json(req, self.ctx.settings.max_body_bytes)
        only_keys(data, {"owner"})
        env = get_environment(self, name)
        owner = data.get("owner")
        user = _users_by_name([owner])[0] if owner is not None else None
        ownership.set_owner(env.name, user.id if user else None, self.ctx.now())
        self.audit(req, "environment_owner_set", target=env.name, detail={"owner": owner})
        send_json(resp, {"environment": env.name, "owner": owner})


class AllowedRoots(Resource):
    """``GET/PUT /api/settings/paths`` ``{roots: [folders]}``: folders outside the workspace that configured paths
    may reach (models, datasets); the workspace's own folders always may, the server's private files never."""

    permissions = {"GET": "settings.manage", "PUT": "settings.manage"}

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        policy = server_path_policy(self.ctx.workspace)
        send_json(resp, {"roots": allowed_roots(), "effective_roots": [str(r) for r in policy.roots],
                         "private": [str(p) for p in policy.denied]})

    def on_put(self, req: falcon.Request, resp: falcon.Response) -> None:
        data = read_json(req, self.ctx.settings.max_body_bytes)
        only_keys(data, {"roots"})
        try:
            roots = check_roots(data.get("roots"))
        except SimpleTunerError as exc:
            raise bad_request(str(exc)) from None
        set_allowed_roots(roots)
        self.audit(req, "allowed_roots_changed", detail={"roots": roots})
        send_json(resp, {"roots": roots})
