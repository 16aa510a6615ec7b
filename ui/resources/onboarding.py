"""Onboarding: the workspace's folders, the GPUs training uses, and whether the first-run steps are done.

GPU choices are accelerate settings (``gpu_ids``, ``num_processes``, multi-node fields) written to the ``default``
environment, which environments created here merge ("Use environment defaults").
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import falcon

from simpletuner.core.config.loading import build_schema, env_source
from simpletuner.core.config.schema import Layer
from simpletuner.core.environments import DEFAULT_ENVIRONMENT
from simpletuner.core.errors import ConfigError, SimpleTunerError
from simpletuner.ui.db.models import Setting
from simpletuner.ui.http import bad_request, boolean, only_keys, read_json
from simpletuner.ui.resources.base import Resource, send_json
from simpletuner.ui.resources.environments import store_of
from simpletuner.ui.workflow.examples import list_examples
from simpletuner.ui.workflow.gpus import list_gpus

ONBOARDING_KEY = "onboarding"
FOLDER_KEYS = ("configs_dir", "datasets_dir", "output_dir")
GPU_KEYS = ("gpu_ids", "num_processes", "num_machines", "machine_rank", "main_process_ip", "main_process_port")


def onboarding_done() -> bool:
    """Whether an admin finished (or skipped) onboarding."""
    row = Setting.get_or_none(Setting.key == ONBOARDING_KEY)
    return bool(row and row.value.get("done"))


def _set_done(done: bool, now: float) -> None:
    value = {"done": done, "at": now}
    if not Setting.update(value=value).where(Setting.key == ONBOARDING_KEY).execute():
        Setting.create(key=ONBOARDING_KEY, value=value)


def _folder(value: Any, key: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise bad_request(f"{key} must be a folder path")
    path = Path(value.strip()).expanduser()
    if not path.is_absolute():
        raise bad_request(f"{key} must be an absolute path, e.g. /data/simpletuner/{key.split('_')[0]}")
    if path.exists() and not path.is_dir():
        raise bad_request(f"{key}: {path} exists and is not a folder")
    return str(path)


class Onboarding(Resource):
    """``GET /api/onboarding``: folders, GPU settings, examples, whether done; ``PATCH`` changes them."""

    permissions = {"GET": "settings.manage", "PATCH": "settings.manage"}

    def _state(self) -> dict[str, Any]:
        workspace = self.ctx.workspace
        store = store_of(self)
        gpu_settings: dict[str, Any] = {}
        if store.exists(DEFAULT_ENVIRONMENT):
            raw = store.get(DEFAULT_ENVIRONMENT).read_config()
            gpu_settings = {k.lstrip("-"): v for k, v in raw.items() if k.lstrip("-") in GPU_KEYS}
        families = set(self.ctx.registry.model_families())
        return {
            "done": onboarding_done(),
            "folders": {"configs_dir": str(workspace.configs_dir), "datasets_dir": str(workspace.datasets_dir),
                        "output_dir": str(workspace.output_dir)},
            "gpu_settings": gpu_settings,
            "environments": [e.name for e in store.list()],
            "examples": [e.to_json(e.family in families) for e in list_examples()],
        }

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        send_json(resp, self._state())

    def on_patch(self, req: falcon.Request, resp: falcon.Response) -> None:
        data = read_json(req, self.ctx.settings.max_body_bytes)
        only_keys(data, {"folders", "gpus", "done"})
        if "folders" in data:
            folders = data["folders"]
            if not isinstance(folders, dict):
                raise bad_request("folders must be an object with configs_dir, datasets_dir and output_dir")
            only_keys(folders, set(FOLDER_KEYS))
            changes = {key: _folder(value, key) for key, value in folders.items()}
            for path in changes.values():
                Path(path).mkdir(parents=True, exist_ok=True)
            try:
                self.ctx.workspace.update_settings(**changes)
            except (SimpleTunerError, OSError) as exc:
                raise bad_request(str(exc)) from None
        if "gpus" in data:
            self._save_gpus(data["gpus"])
        if "done" in data:
            _set_done(boolean(data, "done"), self.ctx.now())
        self.audit(req, "onboarding_changed", detail={"parts": sorted(data)})
        send_json(resp, self._state())

    def _save_gpus(self, gpus: Any) -> None:
        if not isinstance(gpus, dict):
            raise bad_request("gpus must be an object of " + ", ".join(GPU_KEYS))
        only_keys(gpus, set(GPU_KEYS))
        store = store_of(self)
        existing = store.get(DEFAULT_ENVIRONMENT).read_config() if store.exists(DEFAULT_ENVIRONMENT) else {}
        updated = {k: v for k, v in existing.items() if k.lstrip("-") not in GPU_KEYS}
        updated.update({k: v for k, v in gpus.items() if v is not None and v != ""})
        schema = build_schema(self.ctx.registry)
        try:
            schema.load([Layer(env_source(DEFAULT_ENVIRONMENT), updated)], own_source=env_source(DEFAULT_ENVIRONMENT))
        except ConfigError as exc:
            send = "; ".join(exc.problems)
            raise falcon.HTTPUnprocessableEntity(description=send) from None
        if store.exists(DEFAULT_ENVIRONMENT):
            store.get(DEFAULT_ENVIRONMENT).write_config(updated)
        else:
            store.create(DEFAULT_ENVIRONMENT, updated)


class Gpus(Resource):
    """``GET /api/system/gpus?refresh=1``: the GPUs torch sees, with names and memory."""

    permissions = {"GET": "config.view"}

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        send_json(resp, list_gpus(refresh=req.get_param_as_bool("refresh") or False))


class Examples(Resource):
    """``GET /api/examples``: the example environments shipped with SimpleTuner, and whether their family is
    installed."""

    permissions = {"GET": "config.view"}

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        families = set(self.ctx.registry.model_families())
        send_json(resp, {"examples": [e.to_json(e.family in families) for e in list_examples()]})
