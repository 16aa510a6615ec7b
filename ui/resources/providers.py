"""Configuring login providers (Auth Providers tab): instances of installed auth-provider plugins."""

from __future__ import annotations

from typing import Any

import falcon
import peewee

from simpletuner.ui.auth.providers import check_group_levels, check_options, config_to_json, provider_types
from simpletuner.ui.auth.users import AccountError, levels_by_name
from simpletuner.ui.db.models import AuthProviderConfig
from simpletuner.ui.http import (
    LABEL_RE,
    LABEL_RULE,
    NAME_RE,
    NAME_RULE,
    bad_request,
    boolean,
    field,
    only_keys,
    read_json,
)
from simpletuner.ui.resources.base import Resource, http_error, send_json

MANAGE = "providers.manage"
FIELDS = {"name", "type", "title", "enabled", "options", "group_levels", "default_level", "position"}


class ProviderTypes(Resource):
    """``GET /api/auth-provider-types``: installed provider plugins and their option fields (for the forms)."""

    permissions = {"GET": MANAGE}

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        send_json(resp, {"types": provider_types(self.ctx.registry)})


def _apply(config: AuthProviderConfig, data: dict[str, Any], resource: Resource) -> None:
    spec = resource.ctx.providers.spec(config)
    if "title" in data:
        config.title = field(data, "title", LABEL_RE, what=LABEL_RULE)
    if "enabled" in data:
        config.enabled = boolean(data, "enabled")
    if "position" in data:
        if not isinstance(data["position"], int) or isinstance(data["position"], bool):
            raise bad_request("position must be an integer")
        config.position = data["position"]
    if "options" in data:
        if not isinstance(data["options"], dict):
            raise bad_request("options must be an object")
        config.options, config.secrets = check_options(spec, data["options"], config.secrets or {})
    if "group_levels" in data:
        config.group_levels = check_group_levels(data["group_levels"])
    if "default_level" in data:
        level = data["default_level"]
        if level is not None:
            if not isinstance(level, str):
                raise bad_request("default_level must be a level name or null")
            levels_by_name([level])
        config.default_level = level
    config.updated_at = resource.ctx.now()


def _config(provider_id: int) -> AuthProviderConfig:
    config = AuthProviderConfig.get_or_none(AuthProviderConfig.id == provider_id)
    if config is None:
        raise falcon.HTTPNotFound(description=f"no login provider with id {provider_id}")
    return config


class ProviderConfigs(Resource):
    """``GET /api/auth-providers``; ``POST`` ``{name, type, title, options, group_levels, default_level, enabled}``."""

    permissions = {"GET": MANAGE, "POST": MANAGE}

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        query = AuthProviderConfig.select().order_by(AuthProviderConfig.position, AuthProviderConfig.id)
        send_json(resp, {"providers": [config_to_json(c, self.ctx.registry) for c in query]})

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        data = read_json(req, self.ctx.settings.max_body_bytes)
        only_keys(data, FIELDS)
        name = field(data, "name", NAME_RE, what=NAME_RULE)
        kind = field(data, "type", NAME_RE, what="the name of an installed auth-provider plugin")
        if kind not in self.ctx.registry.auth_providers():
            installed = ", ".join(self.ctx.registry.auth_providers()) or "none"
            raise bad_request(f"no auth-provider plugin {kind!r} is installed; installed: {installed}")
        if kind == "local":
            raise falcon.HTTPConflict(description="local accounts are always configured; there is one local provider")
        now = self.ctx.now()
        config = AuthProviderConfig(name=name, type=kind, title=name, enabled=True, options={}, secrets={},
                                    group_levels={}, default_level=None, position=0, created_at=now, updated_at=now)
        data.setdefault("options", {})
        try:
            _apply(config, data, self)
            config.save(force_insert=True)
        except AccountError as exc:
            raise http_error(exc) from None
        except peewee.IntegrityError:
            raise falcon.HTTPConflict(description=f"a login provider named {name!r} already exists") from None
        self.audit(req, "provider_created", target=name, detail={"type": kind})
        send_json(resp, {"provider": config_to_json(config, self.ctx.registry)}, 201)


class ProviderConfigItem(Resource):
    """``GET/PATCH/DELETE /api/auth-providers/{provider_id}``; the local provider cannot be disabled or deleted."""

    permissions = {"GET": MANAGE, "PATCH": MANAGE, "DELETE": MANAGE}

    def on_get(self, req: falcon.Request, resp: falcon.Response, provider_id: int) -> None:
        send_json(resp, {"provider": config_to_json(_config(provider_id), self.ctx.registry)})

    def on_patch(self, req: falcon.Request, resp: falcon.Response, provider_id: int) -> None:
        data = read_json(req, self.ctx.settings.max_body_bytes)
        only_keys(data, FIELDS - {"name", "type"})
        config = _config(provider_id)
        if config.type == "local" and data.get("enabled") is False:
            raise falcon.HTTPConflict(description="local accounts cannot be disabled (they are the way back in)")
        try:
            _apply(config, data, self)
        except AccountError as exc:
            raise http_error(exc) from None
        config.save()
        self.audit(req, "provider_changed", target=config.name, detail={"fields": sorted(data)})
        send_json(resp, {"provider": config_to_json(config, self.ctx.registry)})

    def on_delete(self, req: falcon.Request, resp: falcon.Response, provider_id: int) -> None:
        config = _config(provider_id)
        if config.type == "local":
            raise falcon.HTTPConflict(description="local accounts cannot be removed")
        config.delete_instance()
        self.audit(req, "provider_deleted", target=config.name)
        send_json(resp, {"deleted": provider_id})


class ProviderTest(Resource):
    """``POST /api/auth-providers/{provider_id}/test``: check the saved configuration against the real service."""

    permissions = {"POST": MANAGE}

    def on_post(self, req: falcon.Request, resp: falcon.Response, provider_id: int) -> None:
        config = _config(provider_id)
        try:
            message = self.ctx.providers.get(config).test_connection()
            ok = True
        except AccountError as exc:
            raise http_error(exc) from None
        except Exception as exc:  # the service's own error is the useful answer here
            ok, message = False, f"{type(exc).__name__}: {exc}"
        self.audit(req, "provider_tested", target=config.name, success=ok)
        send_json(resp, {"ok": ok, "message": message})
