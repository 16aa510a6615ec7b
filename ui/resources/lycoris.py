"""The LyCORIS config of an environment over HTTP: read with presets for its family and the form that edits it,
checked as training will check it, and written as ``lycoris_config.json``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import falcon

from simpletuner.core.atomic import atomic_write_json
from simpletuner.core.config.loading import load_config
from simpletuner.core.config.lycoris_config import lycoris_problems
from simpletuner.core.environments import LYCORIS_FILE, Environment
from simpletuner.core.environments import read_json as read_json_file
from simpletuner.core.errors import ConfigError
from simpletuner.ui.http import bad_request, only_keys, read_json
from simpletuner.ui.resources.base import Resource, send_json
from simpletuner.ui.resources.environments import changeable_environment, get_environment, store_of
from simpletuner.ui.workflow import ownership
from simpletuner.ui.workflow.lycoris_form import lycoris_form
from simpletuner.ui.workflow.lycoris_presets import lycoris_presets
from simpletuner.ui.workflow.path_policy import server_path_policy


def _lycoris_path(resource: Resource, env: Environment) -> tuple[Path, Any]:
    """Where the environment's LyCORIS config lives (its ``lycoris_config`` option, else the file in its folder) and
    its loaded config (None when it does not load); 403 when that place is outside the allowed roots."""
    try:
        config, _ = load_config(store_of(resource), env, resource.ctx.registry)
    except ConfigError:
        config = None
    chosen = config.core.lycoris_config if config is not None else None
    path = resource.ctx.workspace.resolve_config_path(chosen, env.path) if chosen else env.path / LYCORIS_FILE
    problem = server_path_policy(resource.ctx.workspace).problem("lycoris_config", str(path), path)
    if problem:
        raise falcon.HTTPForbidden(title="Outside the allowed roots", description=problem)
    return path, config


def _posted_config(resource: Resource, req: falcon.Request) -> dict[str, Any]:
    data = read_json(req, resource.ctx.settings.max_body_bytes)
    only_keys(data, {"config"})
    lycoris = data.get("config")
    if not isinstance(lycoris, dict) or "algo" not in lycoris:
        raise bad_request("config must be a LyCORIS config object with at least algo (lokr, locon, loha, "
                          "full, ...)")
    return lycoris


def _problems(lycoris: dict[str, Any]) -> list[str]:
    return [f"{LYCORIS_FILE}: {p}" for p in lycoris_problems(lycoris)]


class EnvironmentLycoris(Resource):
    """``GET /api/environments/{name}/lycoris``: the environment's LyCORIS config (null when it has none), its
    ``file`` (and as ``shown_file`` relative to the workspace when inside it), the presets for its family and the
    ``form`` that edits it; ``PUT`` ``{"config": {...}}`` checks it as training will
    and writes ``lycoris_config.json`` in the environment's folder (422 with every problem, nothing written)."""

    permissions = {"GET": "config.view", "PUT": "config.edit"}

    def on_get(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        env = get_environment(self, name)
        path, config = _lycoris_path(self, env)
        try:
            current = read_json_file(path) if path.is_file() else None
        except ConfigError as exc:
            raise falcon.HTTPUnprocessableEntity(description="; ".join(exc.problems)) from None
        if current is not None and not isinstance(current, dict):  # shown as broken, never silently replaced
            raise falcon.HTTPUnprocessableEntity(
                description=f"{_shown(self, path)} holds a JSON {type(current).__name__}, not an object of LyCORIS "
                            "settings; fix the file, or delete it to start from a preset")
        family = config.core.model_family if config is not None else None
        send_json(resp, {"file": str(path), "shown_file": _shown(self, path),
                         "config": current,
                         "presets": lycoris_presets(_block_classes(self.ctx.registry, family)),
                         "form": lycoris_form()})

    def on_put(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        env = changeable_environment(self, req, name)
        lycoris = _posted_config(self, req)
        path, _ = _lycoris_path(self, env)
        if path.resolve().parent != env.path.resolve() and ownership.EDIT_ALL not in self.principal(req).permissions:
            raise falcon.HTTPConflict(
                title="Shared LyCORIS config",
                description=f"this environment reads its LyCORIS config from {path}, outside its own folder, where "
                            "other environments may read it too; unset lycoris_config to edit it here")
        problems = _problems(lycoris)
        if problems:
            send_json(resp, {"ok": False, "errors": problems}, 422)
            return
        atomic_write_json(path, lycoris)
        self.audit(req, "lycoris_saved", target=name, detail={"algo": lycoris["algo"]})
        send_json(resp, {"ok": True, "file": str(path)})


class LycorisValidate(Resource):
    """``POST /api/environments/{name}/lycoris/validate`` ``{"config": {...}}``: the problems a save of this LyCORIS
    config would meet (``{ok, errors}``), nothing written."""

    permissions = {"POST": "config.edit"}

    def on_post(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        get_environment(self, name)
        problems = _problems(_posted_config(self, req))
        send_json(resp, {"ok": not problems, "errors": problems})


def _shown(resource: Resource, path: Path) -> str:
    """A path as a person reads it: relative to the workspace when inside it."""
    root = resource.ctx.workspace.root.resolve()
    resolved = path.resolve()
    return str(resolved.relative_to(root)) if resolved.is_relative_to(root) else str(path)


def _block_classes(registry, family: str | None) -> tuple[str, ...]:  # type: ignore[no-untyped-def]
    """The repeated block classes of a family (none for an unknown one)."""
    spec = registry.find_model_family(family) if family else None
    if spec is None:
        return ()
    try:
        return tuple(getattr(spec.build(spec.flavour(None), None), "block_classes", ()))
    except Exception:  # a plugin family that cannot be built here: the presets target generic class names
        return ()
