"""``create_app``: the Falcon application with its collaborators injected."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from pathlib import Path

import falcon
import peewee

from simpletuner.core.errors import SimpleTunerError
from simpletuner.core.plugins import Registry
from simpletuner.core.workspace import Workspace
from simpletuner.ui.auth.providers import ProviderInstances
from simpletuner.ui.context import AppContext, TrainingStatus
from simpletuner.ui.db.models import bind_models
from simpletuner.ui.errors import error_serializer, handle_user_error
from simpletuner.ui.jobs.models import bind_job_models
from simpletuner.ui.jobs.views import training_status as job_status
from simpletuner.ui.middleware import (
    AuthMiddleware,
    ClientMiddleware,
    DatabaseMiddleware,
    SecurityHeadersMiddleware,
)
from simpletuner.ui.resources.pages import make_templates
from simpletuner.ui.routes import Route, all_routes, check_routes
from simpletuner.ui.settings import ServerSettings
from simpletuner.ui.workflow.models import bind_workflow_models

STATIC_DIR = Path(__file__).parent / "static"


class WebApp(falcon.App):
    """The Falcon app, also holding its route table (walked by tests) and its context."""

    routes: list[Route]
    app_context: AppContext


def create_app(*, database: peewee.Database, registry: Registry, workspace: Workspace,
               settings: ServerSettings | None = None, training_status: TrainingStatus = job_status,
               clock: Callable[[], float] = time.time,
               extra_routes: Callable[[AppContext], Iterable[Route]] | None = None) -> WebApp:
    """Build the web app (its route table is ``app.routes``).

    Args:
        database: a migrated database (see :func:`simpletuner.ui.db.migrate`); the models are bound to it.
        registry: the plugin registry (auth providers, the Plugins page).
        workspace: the workspace the server serves.
        settings: cookie, proxy, throttling and hashing settings.
        training_status: returns the job runner's status for ``GET /api/training/status``.
        clock: the time source (tests move it to expire sessions and keys).
        extra_routes: more routes built from the app context; they go through the same permission checks.
    """
    bind_models(database)
    bind_job_models(database)
    bind_workflow_models(database)
    context = AppContext(database=database, registry=registry, workspace=workspace,
                         settings=settings or ServerSettings(), templates=make_templates(),
                         providers=ProviderInstances(registry), training_status=training_status, clock=clock)
    routes = all_routes(context, extra_routes(context) if extra_routes else ())
    check_routes(routes)
    app = WebApp(middleware=[
        ClientMiddleware(context),
        DatabaseMiddleware(database),
        AuthMiddleware(context),
        SecurityHeadersMiddleware(),
    ])
    app.req_options.strip_url_path_trailing_slash = True
    for route in routes:
        app.add_route(route.template, route.resource)
    app.add_error_handler(SimpleTunerError, handle_user_error)
    app.set_error_serializer(error_serializer(context.templates))
    app.add_static_route("/static", str(STATIC_DIR))
    app.routes, app.app_context = routes, context
    return app
