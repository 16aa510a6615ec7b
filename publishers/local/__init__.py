"""The ``local`` publisher: the final model, its config, validation images and model card copied to a folder.

This module is the entry point; it imports nothing heavy.
"""

from __future__ import annotations

from typing import Any

import attrs

from simpletuner.core.hookspecs import RegisterPublisher, hookimpl
from simpletuner.core.options import PATH, option
from simpletuner.core.specs import PublisherSpec, lazy


@attrs.define(kw_only=True)
class LocalPublisherOptions:
    """Options of the ``local`` publisher."""

    local_publish_dir: str = option(
        "published", help="Folder the local publisher writes to, relative to the run's folder under output_dir "
        "(or absolute).",
        section="publishing", trust=PATH,
    )

    @local_publish_dir.validator
    def _check_dir(self, attribute: Any, value: str) -> None:
        if not value.strip():
            raise ValueError(f"$.{attribute.name}: give a folder, e.g. 'published' or '/srv/models/my-lora'")


@hookimpl
def register_publishers(register: RegisterPublisher) -> None:
    """Register the ``local`` folder publisher."""
    register(PublisherSpec(
        name="local", title="Local folder",
        description="Copies the final model, its config, validation images and model card to a folder.",
        options=LocalPublisherOptions, sends_data=False,
        factory=lazy("simpletuner.publishers.local.publisher:LocalPublisher"),
    ))
