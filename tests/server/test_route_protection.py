"""Every route of the app is protected as it declares: the permission matrix (route × method × anonymous, each
built-in level and a scoped API key) generated from the live route table, CSRF on cookie sessions, the exact list of
public routes, security headers, and pages without inline script."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from simpletuner.ui.auth.apikeys import create_api_key
from simpletuner.ui.auth.permissions import PUBLIC
from simpletuner.ui.auth.sessions import SESSION_COOKIE, start_session
from simpletuner.ui.auth.users import create_user, find_user
from simpletuner.ui.db.models import User, bind_models
from simpletuner.ui.jobs.models import bind_job_models
from simpletuner.ui.middleware import SAFE_METHODS
from simpletuner.ui.workflow.models import bind_workflow_models

from .conftest import PASSWORD, Client, Server
from .route_matrix import (
    PRINCIPALS,
    PrincipalSpec,
    RouteCase,
    Targets,
    expected_answer,
    json_body,
    login_redirect,
    make_template_environment,
    route_cases,
    send,
)

#: Routes anyone may call. Adding a public route means adding it here, on purpose.
PUBLIC_ROUTES = {
    ("GET", "/health"), ("GET", "/api/auth/setup/status"), ("POST", "/api/auth/setup/first-admin"),
    ("POST", "/api/auth/login"), ("POST", "/api/auth/register"), ("GET", "/api/auth/providers"),
    ("GET", "/api/auth/providers/{name}/begin"), ("GET", "/api/auth/providers/{name}/callback"),
    ("GET", "/setup"), ("GET", "/login"),
}

#: Query strings reads need to answer with content rather than 400 (the route table has no query parameters).
READ_QUERIES: dict[str, Callable[[Targets, User], str]] = {
    "/api/datasets/scan": lambda targets, owner: "?path=shapes",
    "/api/datasets/file": lambda targets, owner: "?path=shapes/one.png",
    "/api/jobs/compare": lambda targets, owner: f"?a={targets.job(owner)}&b={targets.job(owner)}",
}


#: Bodies for writes whose empty request would stop before the resource's own checks that follow the declared
#: permission (ownership of a job or an environment), or would meet a 403 of the resource's own (a wrong current
#: password) that hides whether the permission check let the request through. Every other write sends ``{}``.
BODIES: dict[tuple[str, str], Callable[[Targets, User], dict[str, Any]]] = {
    ("POST", "/api/auth/password"): lambda targets, owner: {"current_password": PASSWORD},
    ("POST", "/api/training/stop"): lambda targets, owner: {"job_id": int(targets.job(owner))},
    ("POST", "/api/training/start"): lambda targets, owner: {"environment": targets.environment(owner)},
    ("PATCH", "/api/environments/{name}"): lambda targets, owner: {"name": f"renamed{next(targets.counter)}"},
}


class Matrix:
    """One app for the whole matrix, with a user of each built-in level and an admin's key scoped to reading."""

    def __init__(self, server: Server) -> None:
        self.server = server
        # Self-registration open, so that the public register route is refused only for what a request says.
        server.setup_admin("root").patch("/api/settings/registration", {"enabled": True})
        now = server.clock()
        root = find_user("root")
        assert root is not None
        self.users = {"admin": root}
        for level in ("viewer", "researcher", "lead"):
            self.users[level] = create_user(username=f"{level}-user", email=None, password=PASSWORD, levels=[level],
                                            now=now, rounds=4)
        self.key, _ = create_api_key(user=root, name="read only", now=now, scopes=["config.view"])
        workspace = server.app.app_context.workspace
        self.targets = Targets(workspace, now, make_template_environment(workspace))
        shapes = workspace.datasets_dir / "shapes"
        shapes.mkdir(parents=True)
        (shapes / "one.png").write_bytes(_PNG)
        (shapes / "one.txt").write_text("a white dot")

    def rebind(self) -> None:
        """Bind the models to this app's database (another test's app may have bound them to its own)."""
        bind_models(self.server.database)
        bind_job_models(self.server.database)
        bind_workflow_models(self.server.database)

    def owner(self, principal: PrincipalSpec) -> User:
        """Whose objects the principal works on: its own, a key its owner's, anonymous clients the admin's."""
        return self.users[principal.level or "admin"]

    def credentials(self, principal: PrincipalSpec) -> dict[str, str]:
        """Headers of ``principal``: a fresh session with its CSRF token (a route such as logout may end the
        session), or the key."""
        if principal.level is None:
            return {}
        if principal.key_scopes is not None:
            return {"X-API-Key": self.key}
        token, row = start_session(self.users[principal.level], remember=False, now=self.server.clock(),
                                   settings=self.server.settings, ip="127.0.0.1", user_agent="matrix")
        return {"Cookie": f"{SESSION_COOKIE}={token}", "X-CSRF-Token": row.csrf_token}


#: A 1×1 PNG for the datasets folder.
_PNG = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000"
                     "1f15c4890000000d49444154789c6360f8ffff3f0005fe02fea7d6a4e90000000049454e44ae426082")


@pytest.fixture(scope="module")
def matrix(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Matrix]:
    server = Server(tmp_path_factory.mktemp("matrix"))
    yield Matrix(server)
    server.database.close()


@pytest.mark.timeout(30)
@pytest.mark.parametrize("principal", PRINCIPALS, ids=lambda p: p.name)
@pytest.mark.parametrize("case", route_cases(), ids=lambda c: c.id)
def test_permission_matrix(matrix: Matrix, case: RouteCase, principal: PrincipalSpec) -> None:
    """anonymous → 401 (pages: a redirect to the login page); lacking the declared permission → 403; holding it →
    anything but 401/403 (and reads succeed). Never a server error."""
    matrix.rebind()
    owner = matrix.owner(principal)
    path = matrix.targets.fill(case.template, owner)
    if case.method == "GET":
        query = READ_QUERIES.get(case.template)
        path += query(matrix.targets, owner) if query else ""
    make_body = BODIES.get((case.method, case.template))
    headers, body = json_body(case.method, make_body(matrix.targets, owner) if make_body else {})
    answer = send(matrix.server.app, case.method, path, headers | matrix.credentials(principal), body)
    expected = expected_answer(case, principal)
    context = f"{principal.name}: {case.method} {path} needs {case.requirement!r} → {answer.status} {answer.text[:300]}"
    assert answer.status < 500, context
    if expected == "login" and case.page:
        assert login_redirect(answer), context
    elif expected == "login":
        assert answer.status == 401, context
    elif expected == "forbidden":
        assert answer.status == 403, context
    else:
        assert answer.status not in (401, 403), context
        if case.method == "GET" and case.requirement != PUBLIC:
            assert answer.status < 400, context


UNSAFE_CASES = [c for c in route_cases() if c.method not in SAFE_METHODS and c.requirement != PUBLIC]


@pytest.mark.timeout(30)
@pytest.mark.parametrize("case", UNSAFE_CASES, ids=lambda c: c.id)
def test_cookie_sessions_need_the_csrf_token_for_state_changes(matrix: Matrix, case: RouteCase) -> None:
    """An admin's session without the session's token, or with another session's, is refused before anything."""
    matrix.rebind()
    admin = PrincipalSpec("admin", "admin")
    path = matrix.targets.fill(case.template, matrix.owner(admin))
    headers, body = json_body(case.method, {})
    other_token = matrix.credentials(admin)["X-CSRF-Token"]
    for csrf in (None, other_token):
        credentials = matrix.credentials(admin)
        del credentials["X-CSRF-Token"]
        if csrf is not None:
            credentials["X-CSRF-Token"] = csrf
        answer = send(matrix.server.app, case.method, path, headers | credentials, body)
        assert answer.status == 403 and b"CSRF" in answer.body, (case.id, answer.status, answer.text[:300])


@pytest.mark.parametrize("principal", PRINCIPALS[1:], ids=lambda p: p.name)
def test_principals_hold_what_the_matrix_expects(matrix: Matrix, principal: PrincipalSpec) -> None:
    """The server's view of each principal is the one the expected answers are derived from."""
    matrix.rebind()
    answer = send(matrix.server.app, "GET", "/api/auth/me", matrix.credentials(principal))
    assert set(json.loads(answer.body)["permissions"]) == principal.permissions


def test_the_matrix_covers_every_principal_and_both_answers() -> None:
    """The matrix is not vacuous: each principal meets routes it may and may not use (keys below their owner)."""
    for principal in PRINCIPALS[1:]:
        answers = {expected_answer(case, principal) for case in route_cases()}
        assert answers == ({"allowed"} if principal.name == "admin" else {"allowed", "forbidden"}), principal.name
    assert len(route_cases()) > 60


def test_route_table_matches_the_router(server: Server) -> None:
    templates = {route.template for route in server.app.routes}
    # Falcon's router finds a resource for each concrete URL, and it is the one the table declares.
    for route in server.app.routes:
        url = re.sub(r"\{[^}]+\}", lambda m: "1" if ":int" in m.group(0) else "local", route.template)
        found = server.app._router.find(url)
        assert found is not None and found[0] is route.resource, route.template
    assert len(templates) == len(server.app.routes) == len({c.template for c in route_cases()})


def test_public_routes_are_exactly_the_declared_list() -> None:
    assert {(c.method, c.template) for c in route_cases() if c.requirement == PUBLIC} == PUBLIC_ROUTES


def test_pages_send_anonymous_visitors_to_setup_before_the_first_admin(server: Server) -> None:
    for case in route_cases():
        if case.page and case.requirement != PUBLIC:
            answer = send(server.app, "GET", case.template)
            assert answer.status == 303 and answer.headers["location"] == "/setup", case.id


def test_refusals_are_a_page_for_browsers_and_json_for_api_clients(server: Server, admin: Client) -> None:
    viewer = server.user(admin, "vera", ["viewer"])
    browser = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}
    page = viewer.get("/admin/users", headers=browser)
    assert page.status_code == 403 and page.headers["content-type"].startswith("text/html")
    assert "<h1>Not permitted</h1>" in page.text and "users.manage" in page.text and "vera" in page.text
    assert "<h1>404 Not Found</h1>" in server.client().get("/api/nothing-here", headers=browser).text
    for accept in ("application/json", "*/*"):
        answer = viewer.get("/api/users", headers={"Accept": accept})
        assert answer.status_code == 403 and answer.json["title"] == "Not permitted"


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
