"""Request pipeline: client address, database connection, authentication and authorisation, security headers."""

from __future__ import annotations

import ipaddress
from typing import Any
from urllib.parse import quote, urlparse

import falcon
import peewee

from simpletuner.ui.auth.credentials import same
from simpletuner.ui.auth.permissions import AUTHENTICATED, PUBLIC, Principal
from simpletuner.ui.auth.principals import principal_for_api_key, principal_for_session
from simpletuner.ui.auth.sessions import SESSION_COOKIE
from simpletuner.ui.context import AppContext
from simpletuner.ui.db.connection import connect_checked

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)


def client_address(remote: str | None, forwarded_for: str | None, context: AppContext) -> str | None:
    """The client's address: the peer's, or, when the peer is a trusted proxy, the last address in
    ``X-Forwarded-For`` that is not itself a trusted proxy (a client can prepend anything, never append)."""
    trusted = context.settings.trusted_proxies

    def is_trusted(value: str) -> bool:
        try:
            address = ipaddress.ip_address(value)
        except ValueError:
            return False
        return any(address in net for net in trusted)

    if not remote or not trusted or not forwarded_for or not is_trusted(remote):
        return remote
    for hop in reversed([h.strip() for h in forwarded_for.split(",") if h.strip()]):
        if not is_trusted(hop):
            try:
                return str(ipaddress.ip_address(hop))
            except ValueError:
                return remote
    return remote


def is_loopback(address: str | None) -> bool:
    """True for 127.0.0.0/8 and ::1."""
    try:
        return address is not None and ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


class ClientMiddleware:
    """Puts the trusted client address on ``req.context.client_ip``."""

    def __init__(self, context: AppContext) -> None:
        self.context = context

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        req.context.client_ip = client_address(req.remote_addr, req.get_header("X-Forwarded-For"), self.context)
        req.context.principal = None


class DatabaseMiddleware:
    """One connection per worker thread, opened on first use and kept; reopened when the database server dropped
    it, and dropped when a request finds it broken."""

    def __init__(self, database: peewee.Database) -> None:
        self.database = database

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        connect_checked(self.database)

    def process_response(self, req: falcon.Request, resp: falcon.Response, resource: Any,
                         req_succeeded: bool) -> None:
        if not req_succeeded and not self.database.is_closed() and not self.database.is_connection_usable():
            self.database.close()


class AuthMiddleware:
    """Authenticates (``X-API-Key`` or the session cookie) and enforces each responder's declared requirement.

    Anonymous → 401 (pages redirect to the login page, or to setup while no user exists); not permitted → 403.
    Cookie-authenticated requests that change state must carry the session's CSRF token in ``X-CSRF-Token``;
    anonymous state-changing requests must be JSON (which a cross-site form cannot send) from the same origin.
    """

    def __init__(self, context: AppContext) -> None:
        self.context = context

    def process_resource(self, req: falcon.Request, resp: falcon.Response, resource: Any, params: dict) -> None:
        if resource is None:
            return
        requirement = getattr(resource, "permissions", {}).get(req.method)
        if requirement is None:
            return  # no responder for this method: Falcon answers 405
        is_page = getattr(resource, "page", False)
        if is_page and not self.context.has_users() and not getattr(resource, "setup_page", False):
            raise falcon.HTTPSeeOther("/setup")
        if req.method not in SAFE_METHODS:
            _check_origin(req)
        principal = self._authenticate(req)
        req.context.principal = principal
        if requirement == PUBLIC:
            return
        if principal is None:
            if is_page:
                raise falcon.HTTPSeeOther("/login?next=" + quote(req.relative_uri, safe=""))
            raise falcon.HTTPUnauthorized(title="Authentication required",
                                          description="log in, or send an API key in the X-API-Key header",
                                          challenges=["Session", "ApiKey"])
        if principal.via == "session" and req.method not in SAFE_METHODS:
            if not same(req.get_header("X-CSRF-Token"), principal.csrf_token):
                raise falcon.HTTPForbidden(title="CSRF check failed",
                                           description="send the session's token in the X-CSRF-Token header")
        if requirement != AUTHENTICATED and not principal.allows(requirement):
            raise falcon.HTTPForbidden(title="Not permitted",
                                       description=f"this needs the permission {_describe(requirement)}")

    def _authenticate(self, req: falcon.Request) -> Principal | None:
        now = self.context.now()
        key = req.get_header("X-API-Key")
        if key is not None:
            principal = principal_for_api_key(key.strip(), now, self.context.settings)
            if principal is None:
                # A wrong key never falls back to the cookie: the client asked for key authentication.
                raise falcon.HTTPUnauthorized(title="Invalid API key",
                                              description="the key is unknown, revoked or expired",
                                              challenges=["ApiKey"])
            return principal
        token = req.cookies.get(SESSION_COOKIE)
        return principal_for_session(token, now, self.context.settings) if token else None


def _describe(requirement: str | tuple[str, ...]) -> str:
    return " or ".join(requirement) if isinstance(requirement, tuple) else requirement


def _check_origin(req: falcon.Request) -> None:
    """Refuse state changes whose Origin (or, without one, Referer) names another site; clients that send
    neither (scripts, curl) are not browsers and cannot be driven cross-site."""
    origin = req.get_header("Origin")
    source = origin if origin is not None else req.get_header("Referer")
    if source is None:
        return
    if source == "null" or urlparse(source).netloc.lower() != (req.get_header("Host") or "").lower():
        raise falcon.HTTPForbidden(title="Cross-site request refused",
                                   description="state changes must come from this server's own pages")


class SecurityHeadersMiddleware:
    """CSP without inline script, frame denial, nosniff, referrer policy; no caching of API answers."""

    def process_response(self, req: falcon.Request, resp: falcon.Response, resource: Any,
                         req_succeeded: bool) -> None:
        resp.set_header("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        resp.set_header("X-Frame-Options", "DENY")
        resp.set_header("X-Content-Type-Options", "nosniff")
        resp.set_header("Referrer-Policy", "same-origin")
        resp.set_header("Cross-Origin-Opener-Policy", "same-origin")
        if not req.path.startswith("/static/"):
            resp.set_header("Cache-Control", "no-store")
