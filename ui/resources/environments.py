"""Training environments over HTTP: list, create (blank, from an example or as a copy), rename, delete, download
and upload as ZIP, and each user's active environment (the header switcher)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import falcon

from simpletuner.core.environments import DEFAULT_ENVIRONMENT, MAX_IMPORT_BYTES, Environment, EnvironmentStore
from simpletuner.core.errors import ConfigError, SimpleTunerError
from simpletuner.ui.auth.permissions import AUTHENTICATED
from simpletuner.ui.http import bad_request, boolean, field, only_keys, read_json
from simpletuner.ui.resources.base import Resource, send_json
from simpletuner.ui.workflow.examples import bootstrap, get_example
from simpletuner.ui.workflow.models import active_environment, set_active_environment
from simpletuner.ui.workflow.uploads import UploadError, stream_to_file


def store_of(resource: Resource) -> EnvironmentStore:
    """The environments of the workspace's configs folder (read afresh: onboarding may move it)."""
    return EnvironmentStore(resource.ctx.workspace.configs_dir)


def user_error(exc: SimpleTunerError) -> falcon.HTTPError:
    """400 (404 for a missing environment, 409 for an existing one) carrying the error's message."""
    message = str(exc)
    status = 404 if message.startswith("no environment") else 409 if "already exists" in message else 400
    return falcon.HTTPError(falcon.code_to_http_status(status), title="Not possible", description=message)


def get_environment(resource: Resource, name: str) -> Environment:
    """The named environment, or the HTTP error that says why not."""
    try:
        return store_of(resource).get(name)
    except SimpleTunerError as exc:
        raise user_error(exc) from None


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


def environment_json(store: EnvironmentStore, env: Environment) -> dict[str, Any]:
    """An environment's summary for lists."""
    return env.summary() | {"is_default": env.name == DEFAULT_ENVIRONMENT, "merges_default": merges_default(store, env)}


class Environments(Resource):
    """``GET /api/environments``; ``POST`` ``{name, example?, copy_of?, merge_defaults?, demo_steps?}``."""

    permissions = {"GET": "config.view", "POST": "config.edit"}

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        store = store_of(self)
        send_json(resp, {"environments": [environment_json(store, e) for e in store.list()],
                         "active": pick_active(store, self.principal(req).user_id),
                         "configs_dir": str(store.configs_dir)})

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        data = read_json(req, self.ctx.settings.max_body_bytes)
        only_keys(data, {"name", "example", "copy_of", "merge_defaults", "demo_steps"})
        store = store_of(self)
        example_name = field(data, "example", required=False)
        copy_of = field(data, "copy_of", required=False)
        steps = data.get("demo_steps", 60)
        if not isinstance(steps, int) or not 1 <= steps <= 100_000:
            raise bad_request("demo_steps must be a whole number from 1 to 100000")
        try:
            if example_name is not None and get_example(example_name).builder == "demo":
                env = bootstrap(get_example(example_name), "", self.ctx.workspace, store, demo_steps=steps)
            else:
                name = field(data, "name")
                assert name is not None
                if example_name is not None:
                    env = bootstrap(get_example(example_name), name, self.ctx.workspace, store)
                elif copy_of is not None:
                    env = store.copy(copy_of, name)
                else:
                    merge = boolean(data, "merge_defaults", default=False)
                    env = store.create(name, {"merge_environment_config": True} if merge else {})
        except SimpleTunerError as exc:
            raise user_error(exc) from None
        principal = self.principal(req)
        set_active_environment(principal.user_id, env.name, self.ctx.now())
        self.audit(req, "environment_created", target=env.name)
        send_json(resp, environment_json(store, env), 201)


class EnvironmentItem(Resource):
    """``PATCH /api/environments/{name}`` ``{name}`` renames; ``DELETE`` deletes."""

    permissions = {"PATCH": "config.edit", "DELETE": "config.edit"}

    def on_patch(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        data = read_json(req, self.ctx.settings.max_body_bytes)
        only_keys(data, {"name"})
        new_name = field(data, "name")
        store = store_of(self)
        try:
            env = store.rename(name, new_name or "")
        except SimpleTunerError as exc:
            raise user_error(exc) from None
        principal = self.principal(req)
        if active_environment(principal.user_id) == name:
            set_active_environment(principal.user_id, env.name, self.ctx.now())
        self.audit(req, "environment_renamed", target=name, detail={"to": env.name})
        send_json(resp, environment_json(store, env))

    def on_delete(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        try:
            store_of(self).delete(name)
        except SimpleTunerError as exc:
            raise user_error(exc) from None
        self.audit(req, "environment_deleted", target=name)
        resp.status = falcon.HTTP_204


class EnvironmentCopy(Resource):
    """``POST /api/environments/{name}/copy`` ``{name}``: duplicate under a new name."""

    permissions = {"POST": "config.edit"}

    def on_post(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        data = read_json(req, self.ctx.settings.max_body_bytes)
        only_keys(data, {"name"})
        store = store_of(self)
        try:
            env = store.copy(name, field(data, "name") or "")
        except SimpleTunerError as exc:
            raise user_error(exc) from None
        self.audit(req, "environment_copied", target=name, detail={"to": env.name})
        send_json(resp, environment_json(store, env), 201)


class EnvironmentExport(Resource):
    """``GET /api/environments/{name}/export``: the environment's folder as a ZIP download."""

    permissions = {"GET": "config.view"}

    def on_get(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        env = get_environment(self, name)
        with tempfile.TemporaryDirectory() as scratch:
            target = Path(scratch) / f"{env.name}.zip"
            store_of(self).export(env.name, target)
            resp.data = target.read_bytes()
        resp.content_type = "application/zip"
        resp.downloadable_as = f"{env.name}.zip"


class EnvironmentImport(Resource):
    """``POST /api/environments/import?name=``: create an environment from an uploaded ZIP (``application/zip``)."""

    permissions = {"POST": "config.edit"}

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        if (req.content_type or "").split(";")[0].strip().lower() not in ("application/zip",
                                                                          "application/octet-stream"):
            raise falcon.HTTPUnsupportedMediaType(description="send the ZIP as application/zip")
        name = req.get_param("name") or None
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
                raise user_error(exc) from None
        self.audit(req, "environment_imported", target=env.name)
        send_json(resp, environment_json(store, env), 201)


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
