"""The workflow's pages and its JSON routes: onboarding, environments, configuration, wizard, datasets, training."""

from __future__ import annotations

from typing import Any

import falcon

from simpletuner.core.options import SECTIONS
from simpletuner.ui.context import AppContext
from simpletuner.ui.resources import (
    access,
    config,
    datasets,
    environments,
    hub,
    lycoris,
    onboarding,
    training_history,
    wizard,
)
from simpletuner.ui.resources.pages import Page


def _active(ctx: AppContext, req: falcon.Request) -> dict[str, Any]:
    store = environments.EnvironmentStore(ctx.workspace.configs_dir)
    requested = req.get_param("env")
    names = [e.name for e in store.list()]
    active = requested if requested in names else environments.pick_active(store, req.context.principal.user_id)
    return {"active": active, "environment_names": names}


def _plain(ctx: AppContext, req: falcon.Request) -> dict[str, Any]:
    return _active(ctx, req)


def _config_page(ctx: AppContext, req: falcon.Request) -> dict[str, Any]:
    return _active(ctx, req) | {"sections": SECTIONS}


def _training(ctx: AppContext, req: falcon.Request) -> dict[str, Any]:
    # The installed executors, for the per-job choice beside Start.
    return _active(ctx, req) | {"executors": list(ctx.registry.executors().values())}


def _onboarding(ctx: AppContext, req: falcon.Request) -> dict[str, Any]:
    return _active(ctx, req) | {"done": onboarding.onboarding_done()}


def workflow_page_routes(ctx: AppContext) -> list[tuple[str, Page]]:
    """The workflow's pages."""
    return [
        ("/onboarding", Page(ctx, "onboarding.html", "Get started", "settings.manage", _onboarding)),
        ("/environments", Page(ctx, "environments.html", "Environments", "config.view", _plain)),
        ("/config", Page(ctx, "config.html", "Configuration", "config.view", _config_page)),
        ("/wizard", Page(ctx, "wizard.html", "Training wizard", "config.edit", _plain)),
        ("/datasets", Page(ctx, "datasets.html", "Datasets", "config.view", _plain)),
        ("/training", Page(ctx, "training.html", "Training", "config.view", _training)),
    ]


def workflow_api_routes(ctx: AppContext) -> list[tuple[str, object]]:
    """The workflow's JSON API."""
    table: list[tuple[str, Any]] = [
        ("/api/environments", environments.Environments),
        ("/api/environments/{name}", environments.EnvironmentItem),
        ("/api/environments/{name}/copy", environments.EnvironmentCopy),
        ("/api/environments/{name}/export", environments.EnvironmentExport),
        ("/api/environments/{name}/config", config.EnvironmentConfig),
        ("/api/environments/{name}/config/validate", config.ConfigValidate),
        ("/api/environments/{name}/presets", config.MemoryPresets),
        ("/api/environments/{name}/datasets", config.EnvironmentDatasets),
        ("/api/environments/{name}/lycoris", lycoris.EnvironmentLycoris),
        ("/api/environments/{name}/lycoris/validate", lycoris.LycorisValidate),
        ("/api/environments/{name}/access", access.EnvironmentAccess),
        ("/api/environments/{name}/approve", access.EnvironmentApproval),
        ("/api/environments/{name}/sharing", access.EnvironmentSharing),
        ("/api/environments/{name}/owner", access.EnvironmentOwner),
        ("/api/settings/paths", access.AllowedRoots),
        ("/api/environment-import", environments.EnvironmentImport),
        ("/api/active-environment", environments.ActiveEnvironment),
        ("/api/onboarding", onboarding.Onboarding),
        ("/api/system/gpus", onboarding.Gpus),
        ("/api/examples", onboarding.Examples),
        ("/api/wizard/catalog", wizard.WizardCatalog),
        ("/api/datasets/browse", datasets.Browse),
        ("/api/datasets/folders", datasets.Folders),
        ("/api/datasets/upload", datasets.Upload),
        ("/api/datasets/scan", datasets.Scan),
        ("/api/datasets/file", datasets.DatasetFile),
        ("/api/datasets/backends", datasets.RemoteBackends),
        ("/api/datasets/remote/test", datasets.RemoteTest),
        ("/api/datasets/remote/scan", datasets.RemoteScan),
        ("/api/hub/login", hub.HubLogin),
        ("/api/jobs/{job_id:int}/metrics", training_history.JobMetrics),
    ]
    return [(template, resource_class(ctx)) for template, resource_class in table]


def workflow_routes(ctx: AppContext) -> list[tuple[str, object]]:
    """Pages and API of the workflow, for the route table."""
    return [*workflow_api_routes(ctx), *workflow_page_routes(ctx)]
