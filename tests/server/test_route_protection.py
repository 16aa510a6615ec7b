"""Every route of the app is protected: anonymous → 401 (pages: redirect to login), viewer → 403 on state changes."""

from __future__ import annotations

import re

import pytest

from .conftest import Client, Server

#: Routes anyone may call. Adding a public route means adding it here, on purpose.
PUBLIC = {
    ("GET", "/health"), ("GET", "/api/auth/setup/status"), ("POST", "/api/auth/setup/first-admin"),
    ("POST", "/api/auth/login"), ("POST", "/api/auth/register"), ("GET", "/api/auth/providers"),
    ("GET", "/api/auth/providers/{name}/begin"), ("GET", "/api/auth/providers/{name}/callback"),
    ("GET", "/setup"), ("GET", "/login"),
}
#: State changes every logged-in user may make on their own account.
SELF_SERVICE = {("POST", "/api/auth/logout"), ("POST", "/api/auth/password"), ("PUT", "/api/active-environment")}
STATE_CHANGING = {"POST", "PUT", "PATCH", "DELETE"}


def concrete(template: str) -> str:
    """A URL for a template (ids and names that exist or not do not matter: auth is checked first)."""
    return re.sub(r"\{[^}]+\}", lambda m: "1" if ":int" in m.group(0) else "local", template)


def every_route(server: Server) -> list[tuple[str, str, bool]]:
    return [(method, route.template, route.page) for route in server.app.routes for method in route.methods()]


def test_route_table_matches_the_router(server: Server) -> None:
    templates = {route.template for route in server.app.routes}
    # Falcon's router finds a resource for each concrete URL, and it is the one the table declares.
    for route in server.app.routes:
        found = server.app._router.find(concrete(route.template))
        assert found is not None and found[0] is route.resource, route.template
    assert len(templates) == len(server.app.routes) > 30


def test_public_routes_are_exactly_the_declared_list(server: Server) -> None:
    declared = {(m, t) for m, t, _ in every_route(server)
                if next(r for r in server.app.routes if r.template == t).resource.permissions[m] == "public"}
    assert declared == PUBLIC


@pytest.mark.parametrize("with_users", [False, True])
def test_anonymous_gets_401_or_login_redirect_everywhere(server: Server, with_users: bool) -> None:
    if with_users:
        server.setup_admin()
    anonymous = server.client()
    for method, template, page in every_route(server):
        if (method, template) in PUBLIC:
            continue
        result = anonymous.request(method, concrete(template), json={} if method in STATE_CHANGING else None)
        if page:
            assert result.status_code == 303, (method, template)
            assert result.headers["location"].startswith("/login" if with_users else "/setup")
        else:
            assert result.status_code == 401, (method, template, result.status)


def test_viewer_gets_403_on_every_state_change(server: Server, admin: Client) -> None:
    viewer = server.user(admin, "vera", ["viewer"])
    checked = 0
    for method, template, _ in every_route(server):
        if method not in STATE_CHANGING or (method, template) in PUBLIC | SELF_SERVICE:
            continue
        result = viewer.request(method, concrete(template), json={})
        assert result.status_code == 403, (method, template, result.status, result.text)
        checked += 1
    assert checked >= 14


def test_viewer_cannot_open_admin_pages_but_can_read_status(server: Server, admin: Client) -> None:
    viewer = server.user(admin, "vera", ["viewer"])
    for page in ("/admin/users", "/admin/levels", "/admin/providers", "/admin/audit", "/admin/registration"):
        assert viewer.get(page).status_code == 403
    assert viewer.get("/").status_code == 200
    assert viewer.get("/api/training/status").json["status"] == "idle"


def test_security_headers_on_every_answer(server: Server) -> None:
    for path in ("/health", "/login", "/api/auth/me", "/static/app.js"):
        headers = server.client().get(path).headers
        csp = headers["content-security-policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
        assert headers["x-frame-options"] == "DENY"
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["referrer-policy"] == "same-origin"


def test_pages_hold_no_inline_script(server: Server, admin: Client) -> None:
    for path in ("/", "/profile", "/plugins", "/admin/users", "/admin/levels", "/admin/providers", "/admin/audit",
                 "/admin/registration"):
        html = admin.get(path).text
        scripts = re.findall(r"<script\b[^>]*>(.*?)</script>", html, flags=re.S)
        assert scripts and all(body.strip() == "" for body in scripts), path
        assert not re.search(r"\son[a-z]+=", html), path  # no inline event handlers either
        assert not re.search(r"(src|href)=\"(https?:)?//", html), path  # nothing from a CDN
