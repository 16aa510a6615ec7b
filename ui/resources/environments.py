"""Training environments over HTTP: list, create (blank, from an example or as a copy), rename, delete, download
and upload as ZIP, and each user's active environment (the header switcher)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import falcon

from simpletuner.core.config.loading import build_schema
from simpletuner.core.config.schema import strip_key
from simpletuner.core.config.trust import PrivilegedValues, own_privileged
from simpletuner.core.environments import (
    CONFIG_FILE,
    DEFAULT_ENVIRONMENT,
    MAX_IMPORT_BYTES,
    Environment,
    EnvironmentStore,
)
from simpletuner.core.errors import ConfigError, SimpleTunerError
from simpletuner.ui.auth.permissions import AUTHENTICATED, Principal
from simpletuner.ui.errors import http_error
from simpletuner.ui.http import bad_request, boolean, field, only_keys, read_json
from simpletuner.ui.resources.base import Resource, send_json
from simpletuner.ui.workflow import ownership
from simpletuner.ui.workflow.config_forms import WriteRules
from simpletuner.ui.workflow.examples import bootstrap, get_example
from simpletuner.ui.workflow.models import active_environment, set_active_environment
from simpletuner.ui.workflow.path_policy import server_path_policy
from simpletuner.ui.workflow.remote_datasets import mask_secrets
from simpletuner.ui.workflow.uploads import UploadError, stream_to_file


def store_of(resource: Resource) -> EnvironmentStore:
    """The environments of the workspace's configs folder (read afresh: onboarding may move it)."""
    return EnvironmentStore(resource.ctx.workspace.configs_dir)


def get_environment(resource: Resource, name: str) -> Environment:
    """The named environment, or the HTTP error that says why not."""
    try:
        return store_of(resource).get(name)
    except SimpleTunerError as exc:
        raise http_error(exc) from None


def privileged_of(resource: Resource, env: Environment) -> PrivilegedValues:
    """The privileged values an approval of ``env`` covers, as its files say now."""
    return own_privileged(resource.ctx.workspace, store_of(resource), env, resource.ctx.registry)


def write_rules(resource: Resource, principal: Principal) -> WriteRules:
    """What ``principal`` may write into a configuration on this server."""
    return WriteRules(resource.ctx.workspace, server_path_policy(resource.ctx.workspace),
                      trusted=ownership.TRUSTED in principal.permissions)


def changeable_environment(resource: Resource, req: falcon.Request, name: str) -> Environment:
    """The named environment, when the requesting user may change it (else 404/403 saying why)."""
    env = get_environment(resource, name)
    ownership.require_change(resource.principal(req), env.name)
    return env


def copy_environment(resource: Resource, principal: Principal, source_name: str, target: str) -> Environment:
    """Copy an environment for ``principal``, who owns the copy. The copy keeps an approval of exactly the same
    privileged values; values its source was still waiting for wait on the copy too."""
    source = get_environment(resource, source_name)
    values = privileged_of(resource, source)
    record = ownership.record_of(source.name)
    approved = ownership.is_approved(values, record)
    try:
        env = store_of(resource).copy(source.name, target)
    except SimpleTunerError as exc:
        raise http_error(exc) from None
    copied = privileged_of(resource, env)
    ownership.claim(env.name, principal.user_id, resource.ctx.now(),
                    approved=copied if approved and copied.digest == values.digest else None,
                    approved_by=record.approved_by if record is not None else None)
    return env


def _require_default_rights(principal: Principal, name: str) -> None:
    if name == DEFAULT_ENVIRONMENT and not ownership.may_change(principal, DEFAULT_ENVIRONMENT):
        ownership.require_change(principal, DEFAULT_ENVIRONMENT)


def merges_default(store: EnvironmentStore, env: Environment) -> bool:
    """Whether the environment takes unset keys from ``default`` ("Use environment defaults")."""
    try:
        raw = env.read_config()
    except ConfigError:
        return False
    value = raw.get("merge_environment_config", raw.get("--merge_environment_config"))
    return str(value).lower() in ("true", "1", "yes")


def pick_active(store: EnvironmentStore, user_id: int) -> str | None:
    """The user's active environment: their choice when it still exists, else the first non-default one."""
    names = [env.name for env in store.list()]
    chosen = active_environment(user_id)
    if chosen in names:
        return chosen
    others = [n for n in names if n != DEFAULT_ENVIRONMENT]
    return others[0] if others else (names[0] if names else None)


def environment_json(store: EnvironmentStore, env: Environment, principal: Principal | None = None) -> dict[str, Any]:
    """An environment's summary for lists: with its owner and whether ``principal`` may change it."""
    record = ownership.record_of(env.name)
    data = env.summary() | {"is_default": env.name == DEFAULT_ENVIRONMENT, "merges_default": merges_default(store, env),
                            "owner": record.owner.username if record is not None and record.owner else None}
    if principal is not None:
        data["can_change"] = ownership.may_change(principal, env.name, record)
    return data


def approval_state(resource: Resource, env: Environment) -> str:
    """``none`` (no privileged value set), ``approved`` or ``waiting`` (for a trusted user's approval)."""
    values = privileged_of(resource, env)
    if values.empty:
        return "none"
    return "approved" if ownership.is_approved(values, ownership.record_of(env.name)) else "waiting"


class Environments(Resource):
    """``GET /api/environments``: the environments, and as ``unloadable`` the folders of the configs folder that
    cannot be used as one, each with its ``error``; ``POST`` ``{name, example?, copy_of?, merge_defaults?,
    demo_steps?}``."""

    permissions = {"GET": "config.view", "POST": "config.edit"}

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        store = store_of(self)
        principal = self.principal(req)
        send_json(resp, {"environments": [environment_json(store, e, principal) | {"approval": approval_state(self, e)}
                                           for e in store.list()],
                         "unloadable": [folder.summary() for folder in store.unloadable()],
                         "active": pick_active(store, self.principal(req).user_id),
                         "configs_dir": str(store.configs_dir)})

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        data = read_json(req, self.ctx.settings.max_body_bytes)
        only_keys(data, {"name", "example", "copy_of", "merge_defaults", "demo_steps"})
        store = store_of(self)
        example_name = field(data, "example", required=False)
        copy_of = field(data, "copy_of", required=False)
        steps = data.get("demo_steps", 60)
        if not isinstance(steps, int) or isinstance(steps, bool) or not 1 <= steps <= 100_000:
            raise bad_request("demo_steps must be a whole number from 1 to 100000")
        principal = self.principal(req)
        if isinstance(data.get("name"), str):
            _require_default_rights(principal, data["name"])
        if copy_of is not None:
            env = copy_environment(self, principal, copy_of, field(data, "name") or "")
        else:
            try:
                if example_name is not None and get_example(example_name).builder == "demo":
                    env = bootstrap(get_example(example_name), field(data, "name", required=False) or "",
                                    self.ctx.workspace, store, demo_steps=steps)
                elif example_name is not None:
                    env = bootstrap(get_example(example_name), field(data, "name") or "", self.ctx.workspace, store)
                else:
                    merge = boolean(data, "merge_defaults", default=False)
                    env = store.create(field(data, "name") or "", {"merge_environment_config": True} if merge else {})
            except SimpleTunerError as exc:
                raise http_error(exc) from None
            # what a trusted user writes is approved as written; anyone else's privileged values wait
            trusted = ownership.TRUSTED in principal.permissions
            ownership.claim(env.name, principal.user_id, self.ctx.now(),
                            approved=privileged_of(self, env) if trusted else None, approved_by=principal.username)
        set_active_environment(principal.user_id, env.name, self.ctx.now())
        self.audit(req, "environment_created", target=env.name)
        send_json(resp, environment_json(store, env, principal), 201)


class EnvironmentItem(Resource):
    """``PATCH /api/environments/{name}`` ``{name}`` renames; ``DELETE`` deletes."""

    permissions = {"PATCH": "config.edit", "DELETE": "config.edit"}

    def on_patch(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        data = read_json(req, self.ctx.settings.max_body_bytes)
        only_keys(data, {"name"})
        new_name = field(data, "name")
        store = store_of(self)
        changeable_environment(self, req, name)
        principal = self.principal(req)
        _require_default_rights(principal, new_name or "")
        try:
            env = store.rename(name, new_name or "")
        except SimpleTunerError as exc:
            raise http_error(exc) from None
        ownership.rename_record(name, env.name)
        if active_environment(principal.user_id) == name:
            set_active_environment(principal.user_id, env.name, self.ctx.now())
        self.audit(req, "environment_renamed", target=name, detail={"to": env.name})
        send_json(resp, environment_json(store, env, principal))

    def on_delete(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        changeable_environment(self, req, name)
        try:
            store_of(self).delete(name)
        except SimpleTunerError as exc:
            raise http_error(exc) from None
        ownership.forget(name)
        self.audit(req, "environment_deleted", target=name)
        resp.status = falcon.HTTP_204


class EnvironmentCopy(Resource):
    """``POST /api/environments/{name}/copy`` ``{name}``: duplicate under a new name."""

    permissions = {"POST": "config.edit"}

    def on_post(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        data = read_json(req, self.ctx.settings.max_body_bytes)
        only_keys(data, {"name"})
        store = store_of(self)
        principal = self.principal(req)
        target = field(data, "name") or ""
        _require_default_rights(principal, target)
        env = copy_environment(self, principal, name, target)
        self.audit(req, "environment_copied", target=name, detail={"to": env.name})
        send_json(resp, environment_json(store, env, principal), 201)


class EnvironmentExport(Resource):
    """``GET /api/environments/{name}/export``: the environment's folder as a ZIP download."""

    permissions = {"GET": "config.view"}

    def on_get(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        env = get_environment(self, name)
        with tempfile.TemporaryDirectory() as scratch:
            target = Path(scratch) / f"{env.name}.zip"
            store_of(self).export(env.name, target, redact=self._without_secrets)
            resp.data = target.read_bytes()
        resp.content_type = "application/zip"
        resp.downloadable_as = f"{env.name}.zip"


    def _without_secrets(self, file_name: str, data: Any) -> Any:
        """Leave stored secrets (tokens, keys) out of the archive: anyone who may view may download it."""
        if file_name != CONFIG_FILE:
            return mask_secrets(self.ctx.registry, data)[0]
        if not isinstance(data, dict):
            return data
        secret = {info.key for info in build_schema(self.ctx.registry).options if info.secret}
        return {key: value for key, value in data.items() if strip_key(str(key)) not in secret}


class EnvironmentImport(Resource):
    """``POST /api/environments/import?name=``: create an environment from an uploaded ZIP (``application/zip``)."""

    permissions = {"POST": "config.edit"}

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        if (req.content_type or "").split(";")[0].strip().lower() not in ("application/zip",
                                                                          "application/octet-stream"):
            raise falcon.HTTPUnsupportedMediaType(description="send the ZIP as application/zip")
        name = req.get_param("name") or None
        principal = self.principal(req)
        if name is not None:
            _require_default_rights(principal, name)
        store = store_of(self)
        store.configs_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=store.configs_dir, prefix=".import-") as scratch:
            archive = Path(scratch) / "upload.zip"
            try:
                stream_to_file(req.bounded_stream.read, archive, MAX_IMPORT_BYTES, "the archive")
                env = store.import_(archive, name)
            except UploadError as exc:
                raise falcon.HTTPError(falcon.code_to_http_status(exc.status), title="Upload refused",
                                       description=str(exc)) from None
            except SimpleTunerError as exc:
                raise http_error(exc) from None
        if env.name == DEFAULT_ENVIRONMENT and not ownership.may_change(principal, DEFAULT_ENVIRONMENT):
            store.delete(env.name)  # the archive named itself "default"
            ownership.require_change(principal, DEFAULT_ENVIRONMENT)
        # an imported archive's privileged values wait for a trusted user's approval, whoever imported it
        ownership.claim(env.name, principal.user_id, self.ctx.now())
        self.audit(req, "environment_imported", target=env.name)
        send_json(resp, environment_json(store, env, principal), 201)


class ActiveEnvironment(Resource):
    """``GET/PUT /api/environments/active`` ``{name}``: the environment this user works on."""

    permissions = {"GET": AUTHENTICATED, "PUT": AUTHENTICATED}

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        send_json(resp, {"name": pick_active(store_of(self), self.principal(req).user_id)})

    def on_put(self, req: falcon.Request, resp: falcon.Response) -> None:
        data = read_json(req, self.ctx.settings.max_body_bytes)
        only_keys(data, {"name"})
        env = get_environment(self, field(data, "name") or "")
        set_active_environment(self.principal(req).user_id, env.name, self.ctx.now())
        send_json(resp, {"name": env.name})
