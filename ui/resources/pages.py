"""Server-rendered pages. Each page declares its requirement like any resource; anonymous visitors are sent to
the login page (or to setup while no user exists)."""

from __future__ import annotations

import datetime
from collections.abc import Callable
from typing import Any

import falcon
import jinja2

from simpletuner.ui.auth import audit
from simpletuner.ui.auth.apikeys import api_key_to_json
from simpletuner.ui.auth.credentials import PASSWORD_POLICY
from simpletuner.ui.auth.permissions import AUTHENTICATED, PERMISSIONS, PUBLIC, Requirement
from simpletuner.ui.auth.providers import config_to_json, provider_types
from simpletuner.ui.auth.users import user_to_json
from simpletuner.ui.context import AppContext
from simpletuner.ui.db.models import ApiKey, AuditEvent, AuthProviderConfig, Level, Setting, User
from simpletuner.ui.jobs.retention import retention_settings
from simpletuner.ui.middleware import is_loopback
from simpletuner.ui.resources.base import Resource
from simpletuner.ui.resources.redirect_login import enabled_providers, safe_next
from simpletuner.ui.resources.system import plugins_json
from simpletuner.ui.resources.users import all_user_levels
from simpletuner.ui.workflow.outbound_policy import outbound_policy
from simpletuner.ui.workflow.path_policy import allowed_roots, server_path_policy

Builder = Callable[[AppContext, falcon.Request], dict[str, Any]]


def make_templates() -> jinja2.Environment:
    """The Jinja environment of the packaged templates (autoescaped)."""
    env = jinja2.Environment(loader=jinja2.PackageLoader("simpletuner.ui", "templates"),
                             autoescape=jinja2.select_autoescape(default=True), undefined=jinja2.StrictUndefined)
    env.filters["when"] = lambda ts: "" if ts is None else datetime.datetime.fromtimestamp(
        ts, datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return env


class Page(Resource):
    """A GET page rendered from ``template`` with what ``build`` returns."""

    page = True

    def __init__(self, context: AppContext, template: str, title: str, requirement: Requirement,
                 build: Builder | None = None, setup_page: bool = False) -> None:
        super().__init__(context)
        self.template, self.title, self.build, self.setup_page = template, title, build, setup_page
        self.permissions = {"GET": requirement}

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        data = self.build(self.ctx, req) if self.build else {}
        principal = req.context.principal
        resp.content_type = falcon.MEDIA_HTML
        resp.text = self.ctx.templates.get_template(self.template).render(
            title=self.title, principal=principal, csrf=principal.csrf_token if principal else None, **data)


def _setup(ctx: AppContext, req: falcon.Request) -> dict[str, Any]:
    if ctx.has_users():
        raise falcon.HTTPSeeOther("/login")
    return {"policy": PASSWORD_POLICY, "token_required": not is_loopback(req.context.client_ip),
            "token": req.get_param("token") or ""}


def _login(ctx: AppContext, req: falcon.Request) -> dict[str, Any]:
    if req.context.principal is not None:
        raise falcon.HTTPSeeOther(safe_next(req.get_param("next")))
    return {"providers": enabled_providers(ctx.providers), "next": safe_next(req.get_param("next"))}


def _home(ctx: AppContext, req: falcon.Request) -> dict[str, Any]:
    return {"status": ctx.training_status()}


def _profile(ctx: AppContext, req: falcon.Request) -> dict[str, Any]:
    principal = req.context.principal
    user = User.get_by_id(principal.user_id)
    now = ctx.now()
    keys = [api_key_to_json(k, now) for k in ApiKey.select().where(ApiKey.user == user.id).order_by(ApiKey.id)]
    return {"has_password": bool(user.password_hash), "policy": PASSWORD_POLICY, "keys": keys}


def _levels() -> list[Level]:
    return list(Level.select().order_by(Level.rank, Level.name))


def _users(ctx: AppContext, req: falcon.Request) -> dict[str, Any]:
    levels = all_user_levels()
    return {"users": [user_to_json(u, levels.get(u.id, [])) for u in User.select().order_by(User.id)],
            "levels": _levels(), "policy": PASSWORD_POLICY}


def _level_page(ctx: AppContext, req: falcon.Request) -> dict[str, Any]:
    from simpletuner.ui.resources.levels import _counts, level_to_json

    counts = _counts()
    return {"levels": [level_to_json(lvl, counts.get(lvl.id, 0)) for lvl in _levels()], "permissions": PERMISSIONS}


def _providers(ctx: AppContext, req: falcon.Request) -> dict[str, Any]:
    types = {t["name"]: t for t in provider_types(ctx.registry)}
    configs = []
    for config in AuthProviderConfig.select().order_by(AuthProviderConfig.position, AuthProviderConfig.id):
        data = config_to_json(config, ctx.registry)
        data["options_meta"] = types.get(config.type, {}).get("options", [])
        configs.append(data)
    return {"configs": [_with_form(c) for c in configs], "types": list(types.values()), "levels": _levels()}


def _with_form(config: dict[str, Any]) -> dict[str, Any]:
    # option_fields.html reads options / values / secrets_set from the including template's context.
    return config | {"values": config["options"]}


def _audit(ctx: AppContext, req: falcon.Request) -> dict[str, Any]:
    return {"events": [audit.to_json(e) for e in AuditEvent.select().order_by(AuditEvent.id.desc()).limit(200)]}


def _registration(ctx: AppContext, req: falcon.Request) -> dict[str, Any]:
    return {"registration": Setting.get(Setting.key == "registration").value, "levels": _levels()}


def _retention(ctx: AppContext, req: falcon.Request) -> dict[str, Any]:
    return {"retention": retention_settings().to_json()}


def _outbound(ctx: AppContext, req: falcon.Request) -> dict[str, Any]:
    return {"outbound": outbound_policy().to_json()}


def _paths(ctx: AppContext, req: falcon.Request) -> dict[str, Any]:
    return {"roots": allowed_roots(), "policy": server_path_policy(ctx.workspace)}


def _plugins(ctx: AppContext, req: falcon.Request) -> dict[str, Any]:
    return {"plugins": plugins_json(ctx.registry)}


def page_routes(ctx: AppContext) -> list[tuple[str, Page]]:
    """Every page with its URL."""
    return [
        ("/setup", Page(ctx, "setup.html", "First-run setup", PUBLIC, _setup, setup_page=True)),
        ("/login", Page(ctx, "login.html", "Log in", PUBLIC, _login)),
        ("/", Page(ctx, "home.html", "Home", AUTHENTICATED, _home)),
        ("/profile", Page(ctx, "profile.html", "Your account", AUTHENTICATED, _profile)),
        ("/plugins", Page(ctx, "plugins.html", "Plugins", AUTHENTICATED, _plugins)),
        ("/admin/users", Page(ctx, "users.html", "Users", "users.manage", _users)),
        ("/admin/levels", Page(ctx, "levels.html", "Levels", "levels.manage", _level_page)),
        ("/admin/providers", Page(ctx, "providers.html", "Login providers", "providers.manage", _providers)),
        ("/admin/registration", Page(ctx, "registration.html", "Registration", "settings.manage", _registration)),
        ("/admin/paths", Page(ctx, "paths.html", "Allowed roots", "settings.manage", _paths)),
        ("/admin/outbound", Page(ctx, "outbound.html", "Outbound connections", "settings.manage", _outbound)),
        ("/admin/retention", Page(ctx, "retention.html", "History retention", "settings.manage", _retention)),
        ("/admin/audit", Page(ctx, "audit.html", "Audit log", "audit.view", _audit)),
    ]
