"""The ``local`` tracker: metrics as JSON lines in the run's output folder, read by the web UI's charts.

This module is the entry point; it imports nothing heavy.
"""

from __future__ import annotations

from typing import Any

import attrs

from simpletuner.core.hookspecs import RegisterTracker, hookimpl
from simpletuner.core.options import PATH, option
from simpletuner.core.specs import TrackerSpec, lazy


@attrs.define(kw_only=True)
class LocalTrackerOptions:
    """Options of the ``local`` tracker."""

    local_metrics_file: str = option(
        "metrics.jsonl", help="File of the local tracker, relative to the run's folder under output_dir (or absolute): "
        "one JSON object per line with the step, the time and the values.", section="validation", trust=PATH,
    )

    @local_metrics_file.validator
    def _check_file(self, attribute: Any, value: str) -> None:
        if not value.strip() or value.endswith(("/", "\\")):
            raise ValueError(f"$.{attribute.name}: give a file name such as 'metrics.jsonl', got {value!r}")


@hookimpl
def register_trackers(register: RegisterTracker) -> None:
    """Register the ``local`` JSON-lines tracker."""
    register(TrackerSpec(
        name="local", title="Local metrics file",
        description="Scalars and image paths as JSON lines in the output folder; the web UI charts read it.",
        options=LocalTrackerOptions, sends_data=False,
        factory=lazy("simpletuner.trackers.local.tracker:JsonlTracker"),
    ))
