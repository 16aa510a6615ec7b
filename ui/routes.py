"""The route table: every URL of the app and the resource that serves it.

Resources declare what each method needs (``permissions``); :func:`check_routes` refuses to build an app with a
responder that declares nothing, and the test suite walks this table to check every route answers anonymous
clients with 401 and under-privileged ones with 403. Later features add their routes to :func:`api_routes` or pass
``extra_routes`` to ``create_app``.
"""

from __future__ import annotations

from collections.abc import Iterable

import attrs

from simpletuner.ui.auth.permissions import check_requirement
from simpletuner.ui.context import AppContext
from simpletuner.ui.resources import (
    apikeys,
    events,
    jobs,
    levels,
    providers,
    redirect_login,
    session_auth,
    system,
    users,
)
from simpletuner.ui.resources.pages import page_routes
from simpletuner.ui.resources.workflow_pages import workflow_routes

HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


@attrs.frozen
class Route:
    """A URI template and its resource."""

    template: str
    resource: object = attrs.field(eq=False)

    @property
    def page(self) -> bool:
        """Whether the route is an HTML page (anonymous visitors are redirected rather than given 401)."""
        return bool(getattr(self.resource, "page", False))

    def methods(self) -> list[str]:
        """HTTP methods the resource answers."""
        return [m for m in HTTP_METHODS if hasattr(self.resource, f"on_{m.lower()}")]


def api_routes(ctx: AppContext) -> list[Route]:
    """The JSON API."""
    table = [
        ("/health", system.Health),
        ("/api/auth/setup/status", session_auth.SetupStatus),
        ("/api/auth/setup/first-admin", session_auth.FirstAdmin),
        ("/api/auth/login", session_auth.Login),
        ("/api/auth/logout", session_auth.Logout),
        ("/api/auth/me", session_auth.Me),
        ("/api/auth/password", session_auth.ChangePassword),
        ("/api/auth/register", session_auth.Register),
        ("/api/auth/providers", redirect_login.LoginProviders),
        ("/api/auth/providers/{name}/begin", redirect_login.RedirectBegin),
        ("/api/auth/providers/{name}/callback", redirect_login.RedirectCallback),
        ("/api/users", users.Users),
        ("/api/users/{user_id:int}", users.UserItem),
        ("/api/users/{user_id:int}/password", users.UserPassword),
        ("/api/levels", levels.Levels),
        ("/api/levels/{name}", levels.LevelItem),
        ("/api/permissions", levels.Permissions),
        ("/api/apikeys", apikeys.ApiKeys),
        ("/api/apikeys/{key_id:int}", apikeys.ApiKeyItem),
        ("/api/auth-provider-types", providers.ProviderTypes),
        ("/api/auth-providers", providers.ProviderConfigs),
        ("/api/auth-providers/{provider_id:int}", providers.ProviderConfigItem),
        ("/api/auth-providers/{provider_id:int}/test", providers.ProviderTest),
        ("/api/settings/registration", system.Registration),
        ("/api/settings/outbound", system.OutboundSettings),
        ("/api/settings/retention", system.RetentionSettings),
        ("/api/audit", system.AuditLog),
        ("/api/training/status", system.TrainingStatus),
        ("/api/training/start", jobs.TrainingStart),
        ("/api/training/stop", jobs.TrainingStop),
        ("/api/jobs", jobs.Jobs),
        ("/api/jobs/{job_id:int}", jobs.JobItem),
        ("/api/jobs/{job_id:int}/config", jobs.JobConfig),
        ("/api/jobs/compare", jobs.JobCompare),
        ("/api/jobs/{job_id:int}/log", jobs.JobLog),
        ("/api/jobs/{job_id:int}/try", jobs.JobTry),
        ("/api/jobs/{job_id:int}/files/{path:path}", jobs.JobFile),
        ("/api/events", events.Events),
        ("/api/plugins", system.Plugins),
    ]
    return [Route(template, resource_class(ctx)) for template, resource_class in table]


def all_routes(ctx: AppContext, extra: Iterable[Route] = ()) -> list[Route]:
    """API routes, pages and any extra routes."""
    return [*api_routes(ctx), *(Route(t, r) for t, r in page_routes(ctx)),
            *(Route(t, r) for t, r in workflow_routes(ctx)), *extra]


def check_routes(routes: Iterable[Route]) -> None:
    """Every responder must declare a valid requirement; URIs must be unique."""
    seen: set[str] = set()
    for route in routes:
        if route.template in seen:
            raise ValueError(f"two routes for {route.template}")
        seen.add(route.template)
        declared = getattr(route.resource, "permissions", {})
        for method in route.methods():
            if method not in declared:
                raise ValueError(f"{type(route.resource).__name__}.on_{method.lower()} ({route.template}) declares "
                                 "no permission; add it to the resource's permissions table")
            check_requirement(declared[method])
