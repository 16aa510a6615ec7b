"""Where a dataset entry's images and caches live: the data backend of each, made from the entry's ``type``.

For a backend of local folders (``local``) the entry's paths are folders resolved against the workspace. For a
remote backend (a spec with ``local_paths=False``, such as ``s3``) they are locations in its own storage, passed as
written. Either way:

- images: ``instance_data_dir``;
- latents: ``cache_dir_vae``, else ``<output_dir>/cache/vae/<id>`` on this machine;
- text embeddings: the text_embeds entry's ``cache_dir``, else ``<output_dir>/cache/text/<id>`` on this machine.

A backend's options come from the entry's own keys over the environment's values of the same keys (``config.json``
or the ``default`` environment), so credentials or an endpoint can be set once for every entry.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import attrs

from simpletuner.core.config.datasets import DatasetEntry
from simpletuner.core.config.schema import DEFAULT_SOURCE, TrainingConfig
from simpletuner.core.errors import DataBackendError, SimpleTunerError
from simpletuner.core.interfaces import DataBackend
from simpletuner.core.plugins import Registry
from simpletuner.core.specs import DataBackendSpec, normalize_name

LOCAL = "local"


class DatasetStorage:
    """Makes the data backends of dataset entries.

    Args:
        registry: the plugin registry (data backends).
        resolve_path: turns a local path from the datasets file into an absolute one.
        config: the environment's config, whose values of backend options are the entries' defaults.
    """

    def __init__(self, registry: Registry, resolve_path: Callable[[str], Path],
                 config: TrainingConfig | None = None) -> None:
        self.registry = registry
        self.resolve_path = resolve_path
        self.config = config

    def spec(self, entry: DatasetEntry) -> DataBackendSpec:
        """The backend spec an entry's ``type`` names."""
        spec = self.registry.data_backends().get(normalize_name(entry.type))
        if spec is None:
            raise SimpleTunerError(f"dataset {entry.id!r}: no data backend {entry.type!r} is installed")
        return spec

    def options(self, entry: DatasetEntry) -> dict[str, Any]:
        """The entry's backend options over the environment's values of the same keys."""
        spec = self.spec(entry)
        merged: dict[str, Any] = {}
        if self.config is not None and spec.options is not None:
            for field in attrs.fields(spec.options):
                if self.config.sources.get(field.name, DEFAULT_SOURCE) != DEFAULT_SOURCE:
                    merged[field.name] = self.config.get(field.name)
        merged.update(entry.backend_options)
        return merged

    def backend(self, entry: DatasetEntry, path: str | None, default_folder: Path | None = None) -> DataBackend:
        """The backend of ``path`` (one of the entry's paths); when it is unset and ``default_folder`` is given,
        a local folder there."""
        spec = self.spec(entry)
        if default_folder is not None and spec.local_caches:
            local = self._local_spec(entry)
            return local.build(str(self.resolve_path(path)) if path else str(default_folder), {})
        if path is None and default_folder is not None:
            if not spec.local_paths:
                return self._local_spec(entry).build(str(default_folder), {})
            return spec.build(str(default_folder), self.options(entry))
        if spec.local_paths:
            return spec.build(str(self.resolve_path(path or "")), self.options(entry))
        return spec.build(path or "", self.options(entry))

    def _local_spec(self, entry: DatasetEntry) -> DataBackendSpec:
        """The ``local`` backend, for caches kept on this machine."""
        spec = self.registry.data_backends().get(LOCAL)
        if spec is None:
            raise SimpleTunerError(f"dataset {entry.id!r}: its cache is kept on this machine and the local backend "
                                   "is not installed; install it or set cache_dir_vae / cache_dir on a backend "
                                   "that stores files")
        return spec

    def images(self, entry: DatasetEntry) -> DataBackend:
        """Where an image dataset's images (and caption files) are."""
        return self.backend(entry, entry.instance_data_dir)

    def latents(self, entry: DatasetEntry, cache_root: Path) -> DataBackend:
        """Where an image dataset's latents are cached."""
        return self.backend(entry, entry.cache_dir_vae, cache_root / "vae" / entry.id)

    def text_embeds(self, embeds: DatasetEntry, cache_root: Path) -> DataBackend:
        """Where a text_embeds dataset caches embeddings."""
        return self.backend(embeds, embeds.cache_dir, cache_root / "text" / embeds.id)

    def check(self, entries: Sequence[DatasetEntry]) -> list[str]:
        """One line per enabled entry whose remote storage is unusable (each backend's cheap ``check``)."""
        problems = []
        for entry in entries:
            if entry.disabled or self.spec(entry).local_paths:
                continue
            path = entry.instance_data_dir if entry.dataset_type == "image" else entry.cache_dir
            try:
                self.backend(entry, path or "").check()
            except DataBackendError as exc:
                problems.append(f"dataset {entry.id!r}: {exc}")
        return problems


def check_storage(storage: DatasetStorage, entries: Sequence[DatasetEntry]) -> None:
    """Raise one :class:`DataBackendError` listing every unusable storage (before any heavy work)."""
    problems = storage.check(entries)
    if problems:
        raise DataBackendError("; ".join(problems))

