"""The ``tensorboard`` tracker: scalars and images in TensorBoard event files under the output folder.

This module is the entry point; it imports nothing heavy.
"""

from __future__ import annotations

import attrs

from simpletuner.core.hookspecs import RegisterTracker, hookimpl
from simpletuner.core.options import PATH, option
from simpletuner.core.specs import TrackerSpec, lazy


@attrs.define(kw_only=True)
class TensorBoardOptions:
    """Options of the ``tensorboard`` tracker."""

    logging_dir: str = option(
        "logs", label="TensorBoard log folder",
        help="Folder of TensorBoard event files, relative to the run's folder under output_dir (or "
        "absolute); each run writes into <logging_dir>/<tracker_run_name>.", section="validation", trust=PATH,
    )
    tensorboard_flush_seconds: float = option(
        10, help="How often buffered TensorBoard events are written to disk.", section="validation", minimum=0.1,
    )


@hookimpl
def register_trackers(register: RegisterTracker) -> None:
    """Register the ``tensorboard`` tracker."""
    register(TrackerSpec(
        name="tensorboard", title="TensorBoard",
        description="Scalars and validation images in TensorBoard event files under the output folder.",
        options=TensorBoardOptions, sends_data=False,
        factory=lazy("simpletuner.trackers.tensorboard.tracker:TensorBoardTracker"),
    ))
