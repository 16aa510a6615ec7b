"""Configuration tabs over HTTP: option metadata with effective values and sources, validation as you type by the
config loader itself, atomic saves, memory presets and the datasets file (the LyCORIS config: :mod:`.lycoris`)."""

from __future__ import annotations

import typing
from typing import Any

import falcon

from simpletuner.core.atomic import atomic_write_json
from simpletuner.core.config.confinement import datasets_path_problems
from simpletuner.core.config.datasets import parse_datasets
from simpletuner.core.config.loading import (
    backend_has_local_paths,
    build_schema,
    dataset_placeholders,
    datasets_path,
    load_config,
    regularisation_problems,
)
from simpletuner.core.config.schema import strip_key
from simpletuner.core.config.trust import CONFIG_PART, DATASETS_PART, PrivilegedValues, datasets_privileged
from simpletuner.core.environments import DEFAULT_DATASETS_FILE
from simpletuner.core.environments import read_json as read_json_file
from simpletuner.core.errors import ConfigError, SimpleTunerError
from simpletuner.core.options import PRIVILEGED
from simpletuner.core.presets import apply_memory_preset
from simpletuner.core.specs import normalize_name
from simpletuner.ui.errors import http_error
from simpletuner.ui.http import bad_request, field, only_keys, read_json
from simpletuner.ui.resources.base import Resource, send_json
from simpletuner.ui.resources.environments import (
    changeable_environment,
    get_environment,
    privileged_of,
    store_of,
    write_rules,
)
from simpletuner.ui.workflow import ownership
from simpletuner.ui.workflow.config_forms import config_view, validate_change
from simpletuner.ui.workflow.option_approvals import option_approvals
from simpletuner.ui.workflow.path_policy import server_path_policy
from simpletuner.ui.workflow.remote_datasets import keep_secrets, mask_secrets


def backend_option_types(registry, name: str) -> dict[str, Any] | None:  # type: ignore[no-untyped-def]
    """Option types of a data backend plugin (None: no such backend), for checking a datasets list."""
    spec = registry.data_backends().get(normalize_name(name))
    if spec is None:
        return None
    return typing.get_type_hints(spec.options) if spec.options is not None else {}


def _change(data: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    only_keys(data, {"values", "unset"})
    values = data.get("values", {})
    unset = data.get("unset", [])
    if not isinstance(values, dict):
        raise bad_request("values must be an object of option names to values")
    if not isinstance(unset, list) or not all(isinstance(k, str) for k in unset):
        raise bad_request("unset must be a list of option names")
    return values, unset


class EnvironmentConfig(Resource):
    """``GET /api/environments/{name}/config``: the tabs with every option that applies, effective values and sources,
    problems, and ``approvals`` (see :func:`~simpletuner.ui.workflow.option_approvals.option_approvals`) of the
    privileged options shown; ``PATCH`` ``{values, unset}`` saves when valid (else 422 with
    ``field_errors`` by key and nothing written)."""

    permissions = {"GET": "config.view", "PATCH": "config.edit"}

    def on_get(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        env = get_environment(self, name)
        try:
            view = config_view(store_of(self), env, self.ctx.registry)
        except ConfigError as exc:  # the file is not even JSON: nothing to show field by field
            send_json(resp, {"environment": name, "errors": exc.problems, "unreadable": True}, 422)
            return
        privileged = [option["key"] for section in view["sections"] for option in section["options"]
                      if option["trust"] == PRIVILEGED]
        view["approvals"] = option_approvals(self.ctx.workspace, store_of(self), env, self.ctx.registry,
                                             self.principal(req), privileged)
        send_json(resp, view)

    def on_patch(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        env = changeable_environment(self, req, name)
        principal = self.principal(req)
        values, unset = _change(read_json(req, self.ctx.settings.max_body_bytes))
        try:
            result = validate_change(store_of(self), env, self.ctx.registry, values, unset,
                                     rules=write_rules(self, principal))
        except ConfigError as exc:
            raise falcon.HTTPUnprocessableEntity(description="; ".join(exc.problems)) from None
        if not result.ok:
            send_json(resp, result.to_json(), 422)
            return
        before = privileged_of(self, env)
        env.write_config(result.raw)
        ownership.after_trusted_write(env.name, before, privileged_of(self, env), principal, self.ctx.now())
        self.audit(req, "config_saved", target=name, detail={"set": sorted(values), "unset": sorted(unset)})
        send_json(resp, result.to_json() | {"saved": True})


class ConfigValidate(Resource):
    """``POST /api/environments/{name}/config/validate`` ``{values, unset}``: the problems a save would meet, the
    file it would write (``config``) and, in ``diff``, each option whose effective value or source would change:
    ``{key, old, old_source, new, new_source}`` (sources as in the config view: ``default``,
    ``flavour:<family>/<flavour>``, ``env:<name>``; ``secret: true`` with no values for secret options)."""

    permissions = {"POST": "config.edit"}

    def on_post(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        env = get_environment(self, name)
        values, unset = _change(read_json(req, self.ctx.settings.max_body_bytes))
        try:
            result = validate_change(store_of(self), env, self.ctx.registry, values, unset, review=True,
                                     rules=write_rules(self, self.principal(req)))
        except ConfigError as exc:
            raise falcon.HTTPUnprocessableEntity(description="; ".join(exc.problems)) from None
        schema = build_schema(self.ctx.registry)
        secret = {info.key for info in schema.options if info.secret}
        written = {k: (None if strip_key(k) in secret else v) for k, v in result.raw.items()}
        send_json(resp, result.to_json() | {"config": written, "diff": result.review})


class MemoryPresets(Resource):
    """``GET /api/environments/{name}/presets``: the family's presets with trade-offs; ``POST`` ``{preset}``."""

    permissions = {"GET": "config.view", "POST": "config.edit"}

    def _family(self, env):  # type: ignore[no-untyped-def]
        try:
            config, _ = load_config(store_of(self), env, self.ctx.registry)
        except ConfigError as exc:
            problems = "; ".join(exc.problems)
            raise falcon.HTTPUnprocessableEntity(description="fix the config first: " + problems) from None
        family = self.ctx.registry.find_model_family(config.core.model_family or "")
        if family is None:
            raise falcon.HTTPUnprocessableEntity(description="choose an installed model family first (Model tab)")
        return env, family

    def on_get(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        _, family = self._family(get_environment(self, name))
        send_json(resp, {"family": family.name, "presets": [
            {"name": p.name, "tradeoff": p.tradeoff, "settings": dict(p.settings)} for p in family.memory_presets]})

    def on_post(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        data = read_json(req, self.ctx.settings.max_body_bytes)
        only_keys(data, {"preset"})
        env, family = self._family(changeable_environment(self, req, name))
        principal = self.principal(req)
        before = privileged_of(self, env)
        try:
            # a preset comes from the family plugin; privileged values it might write wait for approval at start
            changes = apply_memory_preset(env, family, field(data, "preset") or "", build_schema(self.ctx.registry))
        except ConfigError as exc:
            raise falcon.HTTPUnprocessableEntity(description="; ".join(exc.problems)) from None
        except SimpleTunerError as exc:
            raise http_error(exc) from None
        ownership.after_trusted_write(env.name, before, privileged_of(self, env), principal, self.ctx.now())
        self.audit(req, "memory_preset_applied", target=name, detail={"preset": data["preset"]})
        send_json(resp, {"changes": {k: {"old": old, "new": new} for k, (old, new) in changes.items()}})


class EnvironmentDatasets(Resource):
    """``GET /api/environments/{name}/datasets``: the datasets list (secret backend options as null, with
    ``secrets_set`` naming the ``{id, key}`` that hold one); ``PUT`` ``{datasets}`` validates and writes it, a null
    secret keeping the stored value."""

    permissions = {"GET": "config.view", "PUT": "config.edit"}

    def _path(self, env):  # type: ignore[no-untyped-def]
        try:
            config, _ = load_config(store_of(self), env, self.ctx.registry)
        except ConfigError:
            config = None
        path = datasets_path(self.ctx.workspace, env, config) or env.path / DEFAULT_DATASETS_FILE
        problem = server_path_policy(self.ctx.workspace).problem("data_backend_config", str(path), path)
        if problem:
            raise falcon.HTTPForbidden(title="Outside the allowed roots", description=problem)
        return path

    def on_get(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        env = get_environment(self, name)
        path = self._path(env)
        try:
            datasets = read_json_file(path) if path.is_file() else []
        except ConfigError as exc:
            raise falcon.HTTPUnprocessableEntity(description="; ".join(exc.problems)) from None
        if not isinstance(datasets, list):  # not a datasets file: say so without showing what it holds
            raise falcon.HTTPUnprocessableEntity(description=f"{path.name} is not a datasets file (a JSON list)")
        datasets, secrets_set = mask_secrets(self.ctx.registry, datasets)
        send_json(resp, {"file": str(path), "datasets": datasets, "secrets_set": secrets_set})

    def on_put(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        env = changeable_environment(self, req, name)
        principal = self.principal(req)
        data = read_json(req, self.ctx.settings.max_body_bytes)
        only_keys(data, {"datasets"})
        datasets = data.get("datasets")
        if not isinstance(datasets, list):
            raise bad_request("datasets must be a list of dataset objects")
        workspace = self.ctx.workspace
        path = self._path(env)
        # directly in the environment's folder: the top-level default's folder is the configs folder itself, and a
        # file further down could be another environment's
        if path.resolve().parent != env.path.resolve() and ownership.EDIT_ALL not in principal.permissions:
            raise falcon.HTTPConflict(
                title="Shared datasets file",
                description=f"this environment reads its datasets from {path}, outside its own folder, where other "
                            "environments may read it too; set data_backend_config to a file in the environment's "
                            "folder (or unset it) to edit its datasets here")
        try:  # secrets come back masked (null): those keep the file's values
            stored = read_json_file(path) if path.is_file() else []
        except ConfigError:
            stored = []
        datasets = keep_secrets(self.ctx.registry, datasets, stored)
        before = privileged_of(self, env)
        after = PrivilegedValues({CONFIG_PART: before.parts[CONFIG_PART],
                                  DATASETS_PART: datasets_privileged(datasets, self.ctx.registry)})
        ownership.require_privileged_unchanged(principal, before, after)
        try:
            entries, _ = parse_datasets(
                datasets, backend_option_types=lambda n: backend_option_types(self.ctx.registry, n),
                resolve_path=lambda p: workspace.resolve_config_path(p, env.path), source="datasets",
                local_paths=lambda n: backend_has_local_paths(self.ctx.registry, n),
                placeholders=dataset_placeholders(store_of(self), env))
        except ConfigError as exc:
            send_json(resp, {"ok": False, "errors": exc.problems}, 422)
            return
        confined = datasets_path_problems(workspace, env, entries, self.ctx.registry, server_path_policy(workspace))
        try:  # checks across the datasets and the config, when the config loads (its own problems show there)
            confined += regularisation_problems(load_config(store_of(self), env, self.ctx.registry)[0], entries)
        except ConfigError:
            pass
        if confined:
            send_json(resp, {"ok": False, "errors": confined}, 422)
            return
        atomic_write_json(path, datasets)
        ownership.after_trusted_write(env.name, before, privileged_of(self, env), principal, self.ctx.now())
        self.audit(req, "datasets_saved", target=name)
        send_json(resp, {"ok": True, "file": str(path)})
