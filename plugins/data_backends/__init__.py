"""Built-in data backends: ``local`` (files on this machine), ``s3`` (an S3-compatible bucket) and ``huggingface``
(the rows of a Hugging Face dataset).

This module is the entry point; it imports nothing heavy.
"""

from __future__ import annotations

from simpletuner.core.hookspecs import RegisterDataBackend, hookimpl
from simpletuner.core.specs import DataBackendSpec, lazy
from simpletuner.plugins.data_backends.huggingface_options import HuggingFaceOptions
from simpletuner.plugins.data_backends.s3_options import S3Options


@hookimpl
def register_data_backends(register: RegisterDataBackend) -> None:
    """Register the local-folder, S3 and Hugging Face dataset backends."""
    register(
        DataBackendSpec(
            name="local",
            title="Local folder",
            description="Images, captions and caches in folders on this machine.",
            factory=lazy("simpletuner.plugins.data_backends.local:LocalDataBackend"),
        )
    )
    register(
        DataBackendSpec(
            name="s3",
            title="S3-compatible storage",
            description="Images, captions and caches in a bucket of AWS S3 or an S3-compatible server (MinIO, "
                        "Ceph, R2, ...).",
            factory=lazy("simpletuner.plugins.data_backends.s3:S3DataBackend.from_options"),
            options=S3Options,
            local_paths=False,
        )
    )
    register(
        DataBackendSpec(
            name="huggingface",
            title="Hugging Face dataset",
            description="The rows of a dataset on the Hugging Face Hub (or downloaded to this machine): images from "
                        "one column, captions from another; caches on this machine.",
            factory=lazy("simpletuner.plugins.data_backends.huggingface:HuggingFaceDataBackend.from_options"),
            options=HuggingFaceOptions,
            local_paths=False,
            local_caches=True,
        )
    )
