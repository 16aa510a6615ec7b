"""API keys: a user's own (profile) or, for user managers, anyone's; shown once, revocable."""

from __future__ import annotations

import falcon

from simpletuner.ui.auth.apikeys import MAX_EXPIRY_DAYS, api_key_to_json, create_api_key
from simpletuner.ui.auth.users import AccountError
from simpletuner.ui.db.models import ApiKey, User
from simpletuner.ui.http import LABEL_RE, LABEL_RULE, bad_request, field, only_keys, read_json
from simpletuner.ui.resources.base import Resource, http_error, send_json

OWN_OR_MANAGE = ("apikeys.own", "users.manage")


class ApiKeys(Resource):
    """``GET /api/apikeys[?all=true]``; ``POST /api/apikeys`` ``{name[, expires_days][, scopes][, user_id]}``."""

    permissions = {"GET": OWN_OR_MANAGE, "POST": OWN_OR_MANAGE}

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        principal = self.principal(req)
        query = ApiKey.select(ApiKey, User.username).join(User).order_by(ApiKey.id)
        if not (req.get_param_as_bool("all", default=False) and "users.manage" in principal.permissions):
            query = query.where(ApiKey.user == principal.user_id)
        now = self.ctx.now()
        send_json(resp, {"keys": [api_key_to_json(k, now, owner=k.user.username) for k in query]})

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        data = read_json(req, self.ctx.settings.max_body_bytes)
        only_keys(data, {"name", "expires_days", "scopes", "user_id"})
        principal = self.principal(req)
        name = field(data, "name", LABEL_RE, what=LABEL_RULE)
        owner_id = data.get("user_id", principal.user_id)
        if not isinstance(owner_id, int) or isinstance(owner_id, bool):
            raise bad_request("user_id must be a user id")
        if owner_id != principal.user_id and "users.manage" not in principal.permissions:
            raise falcon.HTTPForbidden(description="creating keys for other users needs users.manage")
        if owner_id == principal.user_id and "apikeys.own" not in principal.permissions \
                and "users.manage" not in principal.permissions:
            raise falcon.HTTPForbidden(description="this needs the permission apikeys.own")
        owner = User.get_or_none(User.id == owner_id)
        if owner is None:
            raise falcon.HTTPNotFound(description=f"no user with id {owner_id}")
        expires = data.get("expires_days")
        if expires is not None and (isinstance(expires, bool) or not isinstance(expires, int | float)):
            raise bad_request(f"expires_days must be a number of days (1-{MAX_EXPIRY_DAYS})")
        scopes = data.get("scopes")
        if scopes is not None and (not isinstance(scopes, list) or not all(isinstance(s, str) for s in scopes)):
            raise bad_request("scopes must be a list of permission names")
        try:
            key, row = create_api_key(user=owner, name=name or "", now=self.ctx.now(), expires_days=expires,
                                      scopes=scopes, created_by=principal.username)
        except AccountError as exc:
            raise http_error(exc) from None
        self.audit(req, "apikey_created", target=f"{owner.username}:{row.prefix}", detail={"name": name})
        send_json(resp, {"key": key, "api_key": api_key_to_json(row, self.ctx.now(), owner=owner.username)}, 201)


class ApiKeyItem(Resource):
    """``DELETE /api/apikeys/{key_id}``: revoke (one's own key, or anyone's with users.manage)."""

    permissions = {"DELETE": OWN_OR_MANAGE}

    def on_delete(self, req: falcon.Request, resp: falcon.Response, key_id: int) -> None:
        principal = self.principal(req)
        row = ApiKey.get_or_none(ApiKey.id == key_id)
        if row is None or (row.user_id != principal.user_id and "users.manage" not in principal.permissions):
            raise falcon.HTTPNotFound(description=f"no API key with id {key_id}")
        if row.revoked_at is None:
            row.revoked_at = self.ctx.now()
            row.save()
        self.audit(req, "apikey_revoked", target=row.prefix)
        send_json(resp, {"api_key": api_key_to_json(row, self.ctx.now())})
