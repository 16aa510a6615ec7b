"""The datasets folder over HTTP: a browser confined to it, new folders, uploads (files or ZIP archives streamed to
disk and extracted safely), a scan of what training would use, and image previews; and datasets on remote
storage (a backend plugin such as ``s3``): its options, a connection test and the same scan."""

from __future__ import annotations

import math
import mimetypes
import re
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any, TypeVar

import falcon

from simpletuner.core.config.datasets import DatasetEntry
from simpletuner.core.config.loading import load_config
from simpletuner.core.config.trust import unapproved
from simpletuner.core.datasets.storage import DatasetStorage
from simpletuner.core.environments import DEFAULT_ENVIRONMENT
from simpletuner.core.errors import ConfigError, DataBackendError, SimpleTunerError
from simpletuner.core.interfaces import DataBackend
from simpletuner.core.options import PATH, PRIVILEGED, describe_options
from simpletuner.core.outbound import policy_scope, refusal_in
from simpletuner.core.specs import DataBackendSpec
from simpletuner.ui.http import bad_request, field, only_keys, read_json
from simpletuner.ui.resources.base import Resource, send_json
from simpletuner.ui.resources.environments import get_environment, store_of
from simpletuner.ui.workflow.browse import (
    OutsideDatasetsError,
    confine,
    is_image,
    list_folder,
    relative_name,
    scan_folder,
)
from simpletuner.ui.workflow.outbound_policy import outbound_policy
from simpletuner.ui.workflow.ownership import TRUSTED, approved_digests
from simpletuner.ui.workflow.path_policy import server_path_policy
from simpletuner.ui.workflow.publisher_logins import read_scope
from simpletuner.ui.workflow.remote_datasets import (
    RemoteRequestError,
    backends_json,
    describe,
    remote_spec,
    scan_remote,
    typed_options,
)
from simpletuner.ui.workflow.uploads import UploadError, UploadLimits, receive

T = TypeVar("T")
_FOLDER = re.compile(r"^[\w][\w .()+,=@-]{0,99}$")


def _confined_error(exc: OutsideDatasetsError) -> falcon.HTTPError:
    return falcon.HTTPForbidden(title="Outside the datasets folder", description=str(exc))


class Browse(Resource):
    """``GET /api/datasets/browse?path=``: sub-folders (with image counts) and files of a datasets folder."""

    permissions = {"GET": "config.view"}

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        root = self.ctx.workspace.datasets_dir
        root.mkdir(parents=True, exist_ok=True)
        try:
            send_json(resp, list_folder(root, req.get_param("path") or ""))
        except OutsideDatasetsError as exc:
            raise _confined_error(exc) from None
        except (SimpleTunerError, OSError) as exc:
            raise bad_request(str(exc)) from None


class Folders(Resource):
    """``POST /api/datasets/folders`` ``{parent, name}``: create a sub-folder to upload into."""

    permissions = {"POST": "dataset.upload"}

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        data = read_json(req, self.ctx.settings.max_body_bytes)
        only_keys(data, {"parent", "name"})
        name = field(data, "name", _FOLDER, what="letters, digits, spaces and . _ - ( ) + , = @ (no slashes)")
        root = self.ctx.workspace.datasets_dir
        root.mkdir(parents=True, exist_ok=True)
        try:
            parent = confine(root, field(data, "parent", required=False) or "")
        except OutsideDatasetsError as exc:
            raise _confined_error(exc) from None
        target = parent / (name or "")
        try:
            parent.mkdir(parents=True, exist_ok=True)
            target.mkdir()  # never through a link: a link (even a dangling one) of that name is "already exists"
        except (FileExistsError, NotADirectoryError):
            raise falcon.HTTPConflict(description=f"{relative_name(root, target)} already exists, or a file is in "
                                                  "its way") from None
        self.audit(req, "dataset_folder_created", target=relative_name(root, target))
        send_json(resp, {"path": relative_name(root, target)}, 201)


class Upload(Resource):
    """``PUT /api/datasets/upload?path=&name=``: the body is one file (an image, a caption file or a ZIP of them),
    streamed to disk; ZIPs are extracted into ``path`` after every entry passed the safety checks."""

    permissions = {"PUT": "dataset.upload"}

    def __init__(self, context, limits: UploadLimits | None = None) -> None:  # type: ignore[no-untyped-def]
        super().__init__(context)
        self.limits = limits or UploadLimits()

    def on_put(self, req: falcon.Request, resp: falcon.Response) -> None:
        name = req.get_param("name")
        if not name:
            raise bad_request("name (the uploaded file's name) is required")
        root = self.ctx.workspace.datasets_dir
        root.mkdir(parents=True, exist_ok=True)
        try:
            folder = confine(root, req.get_param("path") or "")
        except OutsideDatasetsError as exc:
            raise _confined_error(exc) from None
        if folder == root.resolve():
            raise bad_request("upload into a sub-folder of the datasets folder (create one first)")
        declared = req.content_length
        limit = self.limits.max_total_bytes if name.lower().endswith(".zip") else self.limits.max_file_bytes
        if declared is not None and declared > limit:
            raise falcon.HTTPContentTooLarge(description=f"{name!r} is {declared} bytes; at most {limit} allowed")
        try:
            written = receive(req.bounded_stream.read, folder, name, self.limits)
        except UploadError as exc:
            self.audit(req, "dataset_upload_refused", target=relative_name(root, folder), success=False,
                       detail={"name": name, "reason": str(exc)[:200]})
            raise falcon.HTTPError(falcon.code_to_http_status(exc.status), title="Upload refused",
                                   description=str(exc)) from None
        self.audit(req, "dataset_uploaded", target=relative_name(root, folder), detail={"files": len(written)})
        send_json(resp, {"path": relative_name(root, folder), "files": written}, 201)


def _number(req: falcon.Request, name: str, default: float | None) -> float | None:
    raw = req.get_param(name)
    if raw in (None, ""):
        return default
    try:
        value = float(raw)
    except ValueError:
        raise bad_request(f"{name} must be a number") from None
    if value < 0:
        raise bad_request(f"{name} must not be negative")
    return value


class Scan(Resource):
    """``GET /api/datasets/scan?path=&resolution=&resolution_type=&minimum_image_size=&caption_strategy=
    &instance_prompt=``: images found, those too small (skipped, never upscaled), and caption previews."""

    permissions = {"GET": "config.view"}

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resolution_type = req.get_param("resolution_type") or "pixel"
        if resolution_type not in ("pixel", "area", "pixel_area"):
            raise bad_request("resolution_type must be pixel, area or pixel_area")
        try:
            result = scan_folder(self.ctx.workspace.datasets_dir, req.get_param("path") or "",
                                 resolution=_number(req, "resolution", 1024) or 0, resolution_type=resolution_type,
                                 minimum_image_size=_number(req, "minimum_image_size", None),
                                 caption_strategy=req.get_param("caption_strategy") or "textfile",
                                 instance_prompt=req.get_param("instance_prompt"))
        except OutsideDatasetsError as exc:
            raise _confined_error(exc) from None
        except (SimpleTunerError, OSError) as exc:
            raise bad_request(str(exc)) from None
        send_json(resp, result)


class DatasetFile(Resource):
    """``GET /api/datasets/file?path=``: an image of the datasets folder (for previews)."""

    permissions = {"GET": "config.view"}

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        try:
            path = confine(self.ctx.workspace.datasets_dir, req.get_param("path") or "")
        except OutsideDatasetsError as exc:
            raise _confined_error(exc) from None
        if not path.is_file() or not is_image(path.name):
            raise falcon.HTTPNotFound(description="no such image in the datasets folder")
        resp.content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        resp.stream = open(path, "rb")  # noqa: SIM115 - Falcon closes the stream after sending it
        resp.content_length = path.stat().st_size


def _remote_request(resource: Resource, req: falcon.Request, extra: set[str]) -> tuple[DataBackend, dict[str, Any]]:
    """The backend (already checked) a remote-dataset request names, and the request's other fields.

    The environment's own values of the backend's options (``config.json`` or the ``default`` environment) fill
    what the request leaves empty, as they do at training time. Call it inside the admin's outbound policy
    (:func:`_outbound_scope`): the backend is held to the policy it was built under."""
    data = read_json(req, resource.ctx.settings.max_body_bytes)
    only_keys(data, {"type", "options", "path", "env"} | extra)
    registry = resource.ctx.registry
    try:
        spec = remote_spec(registry, data.get("type"))
        options = typed_options(spec, data.get("options") or {})
    except RemoteRequestError as exc:
        raise bad_request(str(exc)) from None
    path = data.get("path") or ""
    if not isinstance(path, str):
        raise bad_request("path must be a string (a key prefix under the dataset's prefix)")
    principal = resource.principal(req)
    privileged = sorted(key for key in options if key in _keys_of_trust(spec, PRIVILEGED) and options[key] is not None)
    if privileged and TRUSTED not in principal.permissions:
        # an endpoint chosen here would receive the request's (or the environment's) credentials
        raise falcon.HTTPForbidden(title="Privileged options",
                                   description=f"{', '.join(privileged)}: only users holding config.trusted may send "
                                               "storage requests to an endpoint of their choice")
    workspace = resource.ctx.workspace
    for key in sorted(k for k in options if k in _keys_of_trust(spec, PATH) and isinstance(options[k], str)):
        # a backend reading files on this machine (a local copy of a Hub dataset) reads only allowed folders
        resolved = workspace.resolve_config_path(options[key])
        problem = server_path_policy(workspace).problem(f"options.{key}", options[key], resolved)
        if problem:
            raise falcon.HTTPForbidden(title="Path outside the allowed roots", description=problem)
        if resolved.exists():  # read what was checked (a value naming nothing here may be a name, e.g. a Hub id)
            options[key] = str(resolved)
    config = None
    if data.get("env"):
        env = get_environment(resource, str(data["env"]))
        if unapproved(resource.ctx.workspace, store_of(resource), env, registry,
                      approved_digests([env.name, DEFAULT_ENVIRONMENT])):
            raise falcon.HTTPConflict(title="Approval needed",
                                      description=f"{env.name}'s privileged values wait for approval by a user "
                                                  "holding config.trusted; its credentials are not used before")
        try:
            config, _ = load_config(store_of(resource), env, registry)
        except ConfigError:
            config = None  # a broken config.json only loses its defaults here; the config tabs show its problems
    storage = DatasetStorage(registry, lambda p: resource.ctx.workspace.resolve_config_path(p), config)
    merged = storage.options(DatasetEntry(id="wizard", type=spec.name, backend_options=options))
    try:
        backend = spec.build(path, dict(merged))
    except DataBackendError as exc:  # the options alone are unusable: nothing was sent anywhere yet
        raise falcon.HTTPUnprocessableEntity(title="Storage unusable", description=str(exc)) from None
    _reach(resource, req, backend, backend.check)
    return backend, data


def _keys_of_trust(spec: DataBackendSpec, trust: str) -> frozenset[str]:
    return frozenset(i.key for i in describe_options(spec.options) if i.trust == trust) if spec.options else \
        frozenset()


def _outbound_scope() -> AbstractContextManager[None]:
    """The admin's outbound policy, for the work of one request (see :mod:`simpletuner.core.outbound`)."""
    return policy_scope(outbound_policy())


def _reach(resource: Resource, req: falcon.Request, backend: DataBackend, action: Callable[[], T]) -> T:
    """Run ``action``, which talks to the storage; 422 when it fails. Only users who may change the outbound
    policy see why (what the storage answered would otherwise make the server a probe of whatever it can reach);
    others see where and that it failed, or the policy's refusal, and the reason goes to the audit log."""
    try:
        return action()
    except DataBackendError as exc:
        resource.audit(req, "remote_dataset_failed", success=False,
                       detail={"location": describe(backend), "error": str(exc)[:500]})
        if refusal_in(exc) is not None or resource.principal(req).allows("settings.manage"):
            raise falcon.HTTPUnprocessableEntity(title="Storage unusable", description=str(exc)) from None
        raise falcon.HTTPUnprocessableEntity(
            title="Storage unusable", description=f"the storage at {describe(backend)} could not be used; check "
            "its settings, or ask an admin for the reason (recorded in the audit log)") from None


class RemoteBackends(Resource):
    """``GET /api/datasets/backends``: every data backend with its options' metadata (remote ones are offered by
    the dataset wizard beside local folders)."""

    permissions = {"GET": "config.view"}

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        send_json(resp, {"backends": backends_json(self.ctx.registry)})


class RemoteTest(Resource):
    """``POST /api/datasets/remote/test`` ``{type, options, path, env}``: whether the storage answers (a cheap
    request with short timeouts); 422 with a one-line reason when not. Option values are never echoed."""

    permissions = {"POST": "config.edit"}

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        with _outbound_scope(), read_scope(self.ctx.workspace, self.principal(req).user_id):
            backend, _ = _remote_request(self, req, set())
        send_json(resp, {"ok": True, "location": describe(backend)})


class RemoteScan(Resource):
    """``POST /api/datasets/remote/scan`` ``{type, options, path, env, resolution, resolution_type,
    minimum_image_size, caption_strategy, instance_prompt}``: the folder scan's answer for remote storage, with
    inline thumbnails; reads at most a few hundred images (``scanned``)."""

    permissions = {"POST": "config.edit"}

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        with _outbound_scope(), read_scope(self.ctx.workspace, self.principal(req).user_id):
            backend, data = _remote_request(self, req, {"resolution", "resolution_type", "minimum_image_size",
                                                        "caption_strategy", "instance_prompt"})
            resolution_type, numbers = _scan_settings(data)
            prompt = data.get("instance_prompt")
            try:
                result = _reach(self, req, backend, lambda: scan_remote(
                    backend, resolution=numbers["resolution"] or 0, resolution_type=resolution_type,
                    minimum_image_size=numbers["minimum_image_size"],
                    caption_strategy=data.get("caption_strategy") or "textfile",
                    instance_prompt=prompt if isinstance(prompt, str) else None))
            except RemoteRequestError as exc:
                raise bad_request(str(exc)) from None
        send_json(resp, result)


def _scan_settings(data: dict[str, Any]) -> tuple[str, dict[str, float | None]]:
    """The scan's resolution type and its numbers (``resolution``, ``minimum_image_size``), checked."""
    resolution_type = data.get("resolution_type") or "pixel"
    if resolution_type not in ("pixel", "area", "pixel_area"):
        raise bad_request("resolution_type must be pixel, area or pixel_area")
    numbers: dict[str, float | None] = {}
    for name, default in (("resolution", 1024.0), ("minimum_image_size", None)):
        value = data.get(name)
        if value in (None, ""):
            numbers[name] = default
            continue
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise bad_request(f"{name} must be a number")
        try:
            number = float(value)
        except ValueError:
            raise bad_request(f"{name} must be a number") from None
        if not math.isfinite(number) or number < 0:
            raise bad_request(f"{name} must be a non-negative number")
        numbers[name] = number
    return resolution_type, numbers
