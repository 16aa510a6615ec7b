"""Datasets on remote storage (a data backend plugin with ``local_paths=False``, such as ``s3``) in the dataset
wizard: the backends and their options from the registry's metadata, a connection test, a scan preview read
through the backend itself, and secret options kept out of every answer."""

from __future__ import annotations

import base64
import io
import json
import typing
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from simpletuner.core.config.converter import ValueTypeError, make_converter, structure_value
from simpletuner.core.config.datasets import CAPTION_STRATEGIES, DatasetEntry
from simpletuner.core.config.snapshot import secret_backend_keys
from simpletuner.core.datasets.buckets import ResolutionSettings, too_small
from simpletuner.core.datasets.scan import IMAGE_EXTENSIONS, caption_for
from simpletuner.core.errors import SimpleTunerError
from simpletuner.core.interfaces import DataBackend
from simpletuner.core.options import describe_options, type_name
from simpletuner.core.plugins import Registry
from simpletuner.core.specs import DataBackendSpec, normalize_name
from simpletuner.ui.workflow.browse import PREVIEW_PAIRS
from simpletuner.ui.workflow.config_forms import dynamic_choices

#: Images a remote scan reads (each is a download); the counts of a larger dataset are of its first images.
REMOTE_SCAN_LIMIT = 200
THUMBNAIL_EDGE = 192


class RemoteRequestError(SimpleTunerError):
    """A wizard request naming an unknown backend or carrying bad options."""


def backends_json(registry: Registry) -> list[dict[str, Any]]:
    """Every data backend with its options' metadata, as the configuration tabs render plugin options."""
    rows = []
    for spec in registry.data_backends().values():
        options = []
        if spec.options is not None:
            for info in describe_options(spec.options, owner=f"data_backend:{spec.name}"):
                data = info.to_json()
                data["choices"] = data["choices"] or dynamic_choices(registry, info.choices_from)
                options.append(data)
        rows.append({"name": spec.name, "title": spec.title, "description": spec.description,
                     "local_paths": spec.local_paths, "options": options})
    return rows


def remote_spec(registry: Registry, name: Any) -> DataBackendSpec:
    """The spec of a remote backend; :class:`RemoteRequestError` for unknown or local ones."""
    spec = registry.data_backends().get(normalize_name(name)) if isinstance(name, str) else None
    if spec is None:
        known = ", ".join(n for n, s in registry.data_backends().items() if not s.local_paths) or "none installed"
        raise RemoteRequestError(f"type: unknown data backend {name!r}; remote backends: {known}")
    if spec.local_paths:
        raise RemoteRequestError(f"type: {spec.name!r} stores folders on this machine; use the folder browser")
    return spec


def typed_options(spec: DataBackendSpec, raw: Any) -> dict[str, Any]:
    """The wizard's option values checked and converted like a datasets file's (empty values left out)."""
    if not isinstance(raw, Mapping):
        raise RemoteRequestError("options must be an object of option names to values")
    types = typing.get_type_hints(spec.options) if spec.options is not None else {}
    converter = make_converter()
    values, problems = {}, []
    for key, value in raw.items():
        if key not in types:
            problems.append(f"options.{key}: not an option of the {spec.name} backend")
        elif value not in (None, ""):
            if isinstance(value, str) and type_name(types[key]) == "object":
                try:  # the wizard's text field holds an object option as JSON text
                    value = json.loads(value)
                except ValueError as exc:
                    problems.append(f"options.{key}: not JSON ({exc}); write an object, such as {{\"key\": 1}}")
                    continue
            try:
                values[key] = structure_value(converter, value, types[key])
            except ValueTypeError as exc:
                problems.append(f"options.{key}: {exc}")
    if problems:
        raise RemoteRequestError("; ".join(problems))
    return values


def describe(backend: DataBackend) -> str:
    """Where a backend points, for the wizard (never its credentials)."""
    return str(getattr(backend, "location", type(backend).__name__))


def _thumbnail(data: bytes) -> tuple[str, int, int] | None:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as image:
            size = image.size
            image.thumbnail((THUMBNAIL_EDGE, THUMBNAIL_EDGE))
            out = io.BytesIO()
            image.convert("RGB").save(out, "JPEG", quality=80)
    except (OSError, UnidentifiedImageError, ValueError):
        return None
    return "data:image/jpeg;base64," + base64.b64encode(out.getvalue()).decode(), size[0], size[1]


def scan_remote(backend: DataBackend, *, resolution: float, resolution_type: str, minimum_image_size: float | None,
                caption_strategy: str, instance_prompt: str | None = None) -> dict[str, Any]:
    """What training would make of a remote dataset, like the folder scan: image count, those below the minimum
    size, those without a caption, and a few image–caption pairs (thumbnails inline). Reads at most
    :data:`REMOTE_SCAN_LIMIT` images; ``scanned`` says how many."""
    if caption_strategy not in CAPTION_STRATEGIES:
        raise RemoteRequestError(f"caption_strategy must be one of {', '.join(CAPTION_STRATEGIES)}")
    entry = DatasetEntry(id="preview", caption_strategy=caption_strategy, instance_prompt=instance_prompt)
    settings = ResolutionSettings(resolution=resolution, resolution_type=resolution_type,
                                  minimum_image_size=resolution if minimum_image_size is None else minimum_image_size,
                                  alignment=8)
    paths = backend.list(extensions=IMAGE_EXTENSIONS)
    chosen = paths[:REMOTE_SCAN_LIMIT]

    def examine(path: str) -> tuple[str, str, Any]:
        try:
            shown = _thumbnail(backend.read(path))
        except (FileNotFoundError, ValueError):  # gone since the listing, or a key no dataset path can name
            shown = None
        if shown is None:
            return path, "unreadable", None
        if too_small(shown[1], shown[2], settings):
            return path, "too_small", None
        caption = caption_for(entry, backend, path)
        return (path, "no_caption", None) if caption is None else (path, "usable", (shown, caption))

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(examine, chosen))
    by_reason: dict[str, list[str]] = {}
    preview: list[dict[str, Any]] = []
    for path, reason, detail in results:
        by_reason.setdefault(reason, []).append(path)
        if detail is not None and len(preview) < PREVIEW_PAIRS:
            (src, width, height), caption = detail
            preview.append({"image": path, "src": src, "caption": caption, "width": width, "height": height})
    return {"location": describe(backend), "images": len(paths), "scanned": len(chosen),
            "usable": len(by_reason.get("usable", [])), "too_small": len(by_reason.get("too_small", [])),
            "too_small_examples": by_reason.get("too_small", [])[:5],
            "no_caption": len(by_reason.get("no_caption", [])),
            "no_caption_examples": by_reason.get("no_caption", [])[:5],
            "unreadable": len(by_reason.get("unreadable", [])), "preview": preview}


# -- secrets in the datasets file -------------------------------------------------------------------------------

def _secret_keys(registry: Registry, entry: Any) -> set[str]:
    if not isinstance(entry, Mapping):
        return set()
    return secret_backend_keys(registry, str(entry.get("type", "local")))


def mask_secrets(registry: Registry, datasets: Any) -> tuple[Any, list[dict[str, str]]]:
    """The datasets list with secret backend options replaced by null, and which ``{id, key}`` were set."""
    if not isinstance(datasets, list):
        return datasets, []
    masked, present = [], []
    for entry in datasets:
        secrets = _secret_keys(registry, entry) & set(entry) if isinstance(entry, Mapping) else set()
        if secrets:
            entry = dict(entry)
            for key in sorted(secrets):
                if entry[key]:
                    present.append({"id": str(entry.get("id")), "key": key})
                entry[key] = None
        masked.append(entry)
    return masked, present


def keep_secrets(registry: Registry, new: Sequence[Any], old: Any) -> list[Any]:
    """``new`` with each secret that it leaves out or null taken from the entry of the same id and backend in
    ``old`` (the file on disk): a masked value sent back keeps the stored one; an empty string clears it."""
    stored = {e.get("id"): e for e in old if isinstance(e, Mapping)} if isinstance(old, list) else {}
    result = []
    for entry in new:
        before = stored.get(entry.get("id")) if isinstance(entry, Mapping) else None
        if before is not None and before.get("type", "local") == entry.get("type", "local"):
            entry = dict(entry)
            for key in _secret_keys(registry, entry):
                if entry.get(key) is None and before.get(key):
                    entry[key] = before[key]
        result.append(entry)
    return result

