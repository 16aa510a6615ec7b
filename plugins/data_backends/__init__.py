"""Built-in data backends: ``local`` (files on this machine) and ``s3`` (an S3-compatible bucket).

This module is the entry point; it imports nothing heavy.
"""

from __future__ import annotations

from simpletuner.core.hookspecs import hookimpl
from simpletuner.core.specs import DataBackendSpec
from simpletuner.plugins.data_backends.s3_options import S3Options


def _local_backend(root: str, options: object = None) -> object:
    from simpletuner.plugins.data_backends.local import LocalDataBackend

    return LocalDataBackend(root)


def _s3_backend(root: str, options: object = None) -> object:
    from simpletuner.plugins.data_backends.s3 import S3DataBackend

    return S3DataBackend.from_options(root, options)  # type: ignore[arg-type]


@hookimpl
def register_data_backends(register):  # type: ignore[no-untyped-def]
    """Register the local-folder and S3 backends."""
    register(
        DataBackendSpec(
            name="local",
            title="Local folder",
            description="Images, captions and caches in folders on this machine.",
            factory=_local_backend,
        )
    )
    register(
        DataBackendSpec(
            name="s3",
            title="S3-compatible storage",
            description="Images, captions and caches in a bucket of AWS S3 or an S3-compatible server (MinIO, "
                        "Ceph, R2, ...).",
            factory=_s3_backend,
            options=S3Options,
            local_paths=False,
        )
    )
