"""Built-in data backends: ``local`` (files on this machine).

This module is the entry point; it imports nothing heavy.
"""

from __future__ import annotations

from simpletuner.core.hookspecs import hookimpl
from simpletuner.core.specs import DataBackendSpec


def _local_backend(root: str, options: object = None) -> object:
    from simpletuner.plugins.data_backends.local import LocalDataBackend

    return LocalDataBackend(root)


@hookimpl
def register_data_backends(register):  # type: ignore[no-untyped-def]
    """Register the local-folder backend."""
    register(
        DataBackendSpec(
            name="local",
            title="Local folder",
            description="Images, captions and caches in folders on this machine.",
            factory=_local_backend,
        )
    )
