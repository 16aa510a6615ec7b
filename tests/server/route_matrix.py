"""The permission matrix: every route of the app's route table × every method it answers × every principal, and
the answer each one must get, derived from the route's declared requirement and the principal's permissions.

Nothing here lists routes: a route added to ``ui/routes.py`` is in the matrix at once. What the matrix has to know
is how to fill each kind of path parameter with an object that exists (so an allowed request is not a trivial 404),
which the :class:`Targets` table says by the path segment before the parameter.
"""

from __future__ import annotations

import itertools
import json
import re
import tempfile
from functools import cache
from pathlib import Path
from typing import Any

import attrs
import falcon.testing

from simpletuner.core.atomic import atomic_write_json
from simpletuner.core.config.snapshot import RUN_CONFIG_FILE, SNAPSHOT_FORMAT
from simpletuner.core.environments import EnvironmentStore
from simpletuner.core.training.run_folders import create_run_folder
from simpletuner.core.workspace import Workspace
from simpletuner.ui.app import WebApp
from simpletuner.ui.auth.apikeys import create_api_key
from simpletuner.ui.auth.permissions import AUTHENTICATED, BUILTIN_LEVEL_PERMISSIONS, PUBLIC, Requirement
from simpletuner.ui.auth.users import create_user
from simpletuner.ui.db.models import AuthProviderConfig, Level, User
from simpletuner.ui.jobs.models import Job
from simpletuner.ui.middleware import SAFE_METHODS
from simpletuner.ui.workflow import ownership
from simpletuner.ui.workflow.examples import bootstrap, get_example

from .conftest import PASSWORD, Server


@attrs.frozen
class RouteCase:
    """One method of one route, with what it declares."""

    method: str
    template: str
    requirement: Requirement
    page: bool

    @property
    def id(self) -> str:
        return f"{self.method} {self.template}"


@attrs.frozen
class PrincipalSpec:
    """Who sends a request: nobody, a user of a built-in level (session cookie), or an API key with scopes."""

    name: str
    level: str | None = None
    key_scopes: tuple[str, ...] | None = None

    @property
    def permissions(self) -> frozenset[str]:
        """What the principal may do, from the built-in levels' table (a key: its scopes within its owner's)."""
        if self.level is None:
            return frozenset()
        held = BUILTIN_LEVEL_PERMISSIONS[self.level]
        return held & frozenset(self.key_scopes) if self.key_scopes is not None else held


#: Every built-in level, anonymous clients, and an admin's key scoped down to reading.
PRINCIPALS = (
    PrincipalSpec("anonymous"),
    *(PrincipalSpec(level, level) for level in BUILTIN_LEVEL_PERMISSIONS),
    PrincipalSpec("admin-key-config.view", "admin", ("config.view",)),
)


def expected_answer(case: RouteCase, principal: PrincipalSpec) -> str:
    """``allowed``, ``login`` (401, or for pages a redirect to the login page) or ``forbidden`` (403)."""
    if case.requirement == PUBLIC:
        return "allowed"
    if principal.level is None:
        return "login"
    if case.requirement == AUTHENTICATED:
        return "allowed"
    needed = case.requirement if isinstance(case.requirement, tuple) else (case.requirement,)
    return "allowed" if principal.permissions & set(needed) else "forbidden"


@cache
def route_cases() -> tuple[RouteCase, ...]:
    """Every (method, route) of the live route table (built once, for parametrizing at collection)."""
    with tempfile.TemporaryDirectory(prefix="st-routes-") as root:
        server = Server(Path(root))
        cases = tuple(RouteCase(method, route.template, route.resource.permissions[method], route.page)
                      for route in server.app.routes for method in route.methods())
        server.database.close()
    return cases


@attrs.frozen
class Answer:
    """Status, headers and the start of the body (streams are not read to their end)."""

    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode(errors="replace")


def send(app: WebApp, method: str, path: str, headers: dict[str, str] | None = None,
         body: bytes | None = None) -> Answer:
    """Call the WSGI app in-process and read only the first chunk of the answer, so an event stream (which never
    ends) answers like any route."""
    path, _, query = path.partition("?")
    environ = falcon.testing.create_environ(path=path, query_string=query, method=method, headers=headers,
                                            body=body or b"", remote_addr="127.0.0.1")
    started: dict[str, Any] = {}

    def start_response(status: str, response_headers: list[tuple[str, str]], exc_info: Any = None) -> None:
        started["status"] = int(status.split()[0])
        started["headers"] = {k.lower(): v for k, v in response_headers}

    iterable = app(environ, start_response)
    try:
        first = next(iter(iterable), b"")
    finally:
        close = getattr(iterable, "close", None)
        if close is not None:
            close()
    return Answer(started["status"], started["headers"], first)


class Targets:
    """Fresh objects to put into path parameters, owned by the principal under test where ownership matters.

    Environments: ``config.edit`` lets a user change only environments they own or that are shared with them
    (``config.edit.all`` reaches all, ``config.edit.default`` the ``default`` one); the resources check this after
    the declared permission, with their own 403 "Not your environment". The matrix tests the declared permission,
    so each principal works on an environment of its own (an API key on its owner's): then a 403 means the declared
    permission was missing, and an allowed principal is refused only if ownership is checked wrongly.
    Jobs, API keys likewise belong to the principal; users, levels and login providers are fresh throw-away rows.
    """

    #: The path segment before a parameter → the method that makes an object for it.
    FILLERS: dict[str, str] = {
        "users": "user", "levels": "level", "apikeys": "api_key", "auth-providers": "provider_id",
        "providers": "provider_name", "environments": "environment", "jobs": "job", "files": "job_file",
    }

    def __init__(self, workspace: Workspace, now: float, template_env: str) -> None:
        self.workspace, self.now, self.template_env = workspace, now, template_env
        self.store = EnvironmentStore(workspace.configs_dir)
        self.counter = itertools.count(1)  # unique names for everything made

    def fill(self, template: str, owner: User) -> str:
        """``template`` with each ``{parameter}`` replaced by an object that exists."""
        segments = template.split("/")
        for index, segment in enumerate(segments):
            if not segment.startswith("{"):
                continue
            kind = self.FILLERS.get(segments[index - 1])
            assert kind is not None, (f"{template}: the matrix does not know what a {segment} after "
                                      f"/{segments[index - 1]}/ is; add a filler to Targets.FILLERS")
            segments[index] = getattr(self, kind)(owner)
        return "/".join(segments)

    def user(self, owner: User) -> str:
        user = create_user(username=f"target{next(self.counter)}", email=None, password=PASSWORD,
                           levels=["viewer"], now=self.now, rounds=4)
        return str(user.id)

    def level(self, owner: User) -> str:
        name = f"custom{next(self.counter)}"
        Level.create(name=name, description="", builtin=False, rank=0, permissions=["config.view"])
        return name

    def api_key(self, owner: User) -> str:
        _, row = create_api_key(user=owner, name=f"key{next(self.counter)}", now=self.now)
        return str(row.id)

    def _provider(self) -> AuthProviderConfig:
        name = f"dir{next(self.counter)}"
        # A port nothing listens on: the connection test fails at once instead of waiting for a timeout.
        return AuthProviderConfig.create(
            name=name, type="ldap", title=name, enabled=True, options={"ldap_server_url": "ldap://127.0.0.1:9",
                                                                       "ldap_connect_timeout": 1.0},
            secrets={}, group_levels={}, default_level=None, position=1, created_at=self.now, updated_at=self.now)

    def provider_id(self, owner: User) -> str:
        return str(self._provider().id)

    def provider_name(self, owner: User) -> str:
        return self._provider().name

    def environment(self, owner: User) -> str:
        name = f"env{next(self.counter)}"
        self.store.copy(self.template_env, name)
        ownership.claim(name, owner.id, self.now)
        return name

    def job(self, owner: User) -> str:
        output = self.workspace.root / "output" / f"job{next(self.counter)}"
        job = Job.create(environment=self.template_env, owner=owner, owner_name=owner.username, status="completed",
                         output_dir=str(output), created_at=self.now, ended_at=self.now, step=1, total_steps=1)
        run = create_run_folder(output, self.template_env, job_id=job.id, now=self.now)
        (run / "notes.txt").write_text("trained\n")  # and the record of its configuration:
        atomic_write_json(run / RUN_CONFIG_FILE, {"format": SNAPSHOT_FORMAT, "environment": self.template_env,
                                                  "settings": {}, "datasets": [], "lycoris_config": None})
        Job.update(run_dir=str(run)).where(Job.id == job.id).execute()
        return str(job.id)

    def job_file(self, owner: User) -> str:
        return "notes.txt"


def make_template_environment(workspace: Workspace) -> str:
    """An environment with a complete configuration (the Flux LoRA example) that targets are copied from."""
    store = EnvironmentStore(workspace.configs_dir)
    return bootstrap(get_example("flux-lora"), "matrix-template", workspace, store).name


def json_body(method: str, data: dict[str, Any]) -> tuple[dict[str, str], bytes | None]:
    """Headers and body for a request: unsafe methods send ``data`` as JSON (mostly an empty object, which a
    permitted request's validation refuses after the permission check, so little changes by accident)."""
    if method in SAFE_METHODS:
        return {}, None
    return {"Content-Type": "application/json"}, json.dumps(data).encode()


def login_redirect(answer: Answer) -> bool:
    """Whether ``answer`` sends the browser to the login page."""
    return answer.status == 303 and re.match(r"^/login(\?next=|$)", answer.headers.get("location", "")) is not None
