"""The providers offered on the login page, and redirect-style (SSO) logins: begin and callback."""

from __future__ import annotations

from urllib.parse import urlparse

import falcon

from simpletuner.ui.auth.credentials import new_token, token_hash
from simpletuner.ui.auth.devices import known_device, remember_device
from simpletuner.ui.auth.permissions import PUBLIC
from simpletuner.ui.auth.providers import ProviderInstances
from simpletuner.ui.auth.sessions import LOGIN_STATE_COOKIE, clear_cookie
from simpletuner.ui.auth.throttle import address_buckets, record_failure, wait_for
from simpletuner.ui.auth.users import AccountError
from simpletuner.ui.db.models import AuthProviderConfig, PendingLogin
from simpletuner.ui.resources.base import Resource, http_error, send_json
from simpletuner.ui.resources.session_auth import complete_login


def enabled_providers(providers: ProviderInstances) -> list[dict]:
    """Enabled provider configurations whose plugin is installed, in display order."""
    offered = []
    query = AuthProviderConfig.select().where(AuthProviderConfig.enabled == True)  # noqa: E712
    for config in query.order_by(AuthProviderConfig.position, AuthProviderConfig.id):
        try:
            spec = providers.spec(config)
        except AccountError:
            continue
        offered.append({"name": config.name, "title": config.title, "style": spec.style})
    return offered


def safe_next(value: str | None) -> str:
    """A local path to return to after login (never another site)."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value or urlparse(value).netloc:
        return "/"
    return value[:500]


class LoginProviders(Resource):
    """``GET /api/auth/providers``: what the login page offers (names, titles, styles; no configuration)."""

    permissions = {"GET": PUBLIC}

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        send_json(resp, {"providers": enabled_providers(self.ctx.providers)})


def _redirect_config(resource: Resource, name: str) -> AuthProviderConfig:
    config = AuthProviderConfig.get_or_none(AuthProviderConfig.name == name)
    if config is None or not config.enabled:
        raise falcon.HTTPNotFound(description=f"no enabled login provider {name!r}")
    try:
        spec = resource.ctx.providers.spec(config)
    except AccountError as exc:
        raise http_error(exc) from None
    if spec.style != "redirect":
        raise falcon.HTTPBadRequest(description=f"{config.title} logs in with a username and password")
    return config


def callback_uri(req: falcon.Request, name: str) -> str:
    """Where the provider sends the browser back (scheme from the trusted connection, host from the request)."""
    return f"{req.scheme}://{req.get_header('Host') or req.netloc}/api/auth/providers/{name}/callback"


class RedirectBegin(Resource):
    """``GET /api/auth/providers/{name}/begin``: keep the flow's state server-side and send the browser away."""

    permissions = {"GET": PUBLIC}

    def on_get(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        config = _redirect_config(self, name)
        try:
            start = self.ctx.providers.get(config).begin(callback_uri(req, name))
        except AccountError as exc:
            raise http_error(exc) from None
        except Exception as exc:
            self.audit(req, "login_error", success=False, detail={"provider": name, "error": str(exc)[:300]})
            raise falcon.HTTPBadGateway(description=f"the login provider {config.title!r} failed: {exc}") from None
        token = new_token()
        now = self.ctx.now()
        PendingLogin.delete().where(PendingLogin.expires_at <= now).execute()
        PendingLogin.create(token_hash=token_hash(token), provider=name, state=dict(start.state),
                            remember=req.get_param_as_bool("remember", default=False),
                            next_url=safe_next(req.get_param("next")),
                            expires_at=now + self.ctx.settings.pending_login_s)
        resp.set_cookie(LOGIN_STATE_COOKIE, token, max_age=int(self.ctx.settings.pending_login_s), path="/",
                        secure=self.ctx.settings.secure_cookies, http_only=True, same_site="Lax")
        raise falcon.HTTPSeeOther(start.url)


class RedirectCallback(Resource):
    """``GET /api/auth/providers/{name}/callback``: finish the flow (once), then log in and go back to the app.

    A callback without its pending login, or one the provider refused, counts as a failed login of the client's
    address (the provider throttles its own password checks); an address busy failing gets 429 here too. A
    successful login marks the browser as a known device of the account, as a password login does.
    """

    permissions = {"GET": PUBLIC}

    def on_get(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        config = _redirect_config(self, name)
        now, settings = self.ctx.now(), self.ctx.settings
        buckets = address_buckets(req.context.client_ip, settings)
        wait = wait_for(buckets, now, settings)
        if wait is not None:
            self.audit(req, "login_throttled", success=False, detail={"provider": name, "wait_s": wait})
            raise falcon.HTTPTooManyRequests(description=f"too many failed logins; try again in {wait} s",
                                             retry_after=wait)
        token = req.cookies.get(LOGIN_STATE_COOKIE)
        clear_cookie(resp, LOGIN_STATE_COOKIE, self.ctx.settings)
        pending = PendingLogin.get_or_none(PendingLogin.token_hash == token_hash(token)) if token else None
        if pending is not None:
            PendingLogin.delete().where(PendingLogin.token_hash == pending.token_hash).execute()  # single use
        if pending is None or pending.provider != name or pending.expires_at <= now:
            record_failure(buckets, now, settings, self.ctx.database)
            self.audit(req, "login_failed", success=False, detail={"provider": name, "reason": "no pending login"})
            raise falcon.HTTPBadRequest(title="Login expired", description="start the login again from the login page")
        params = {k: v for k, v in req.params.items() if isinstance(v, str)}
        try:
            identity = self.ctx.providers.get(config).complete(params, pending.state)
        except Exception as exc:
            self.audit(req, "login_error", success=False, detail={"provider": name, "error": str(exc)[:300]})
            raise falcon.HTTPBadGateway(description=f"the login provider {config.title!r} failed: {exc}") from None
        if identity is None:
            record_failure(buckets, now, settings, self.ctx.database)
            self.audit(req, "login_failed", success=False, detail={"provider": name})
            raise falcon.HTTPUnauthorized(title="Login failed", description=f"{config.title} refused the login")
        user = complete_login(self, req, resp, config, identity, pending.remember)
        remember_device(resp, user.username, known_device(req.cookies, user.username, now, settings), now, settings)
        raise falcon.HTTPSeeOther(pending.next_url)
