"""The ``wandb`` tracker: metrics and validation images in Weights & Biases.

This module is the entry point; it imports nothing heavy (wandb is imported when a run starts).
"""

from __future__ import annotations

import attrs

from simpletuner.core.hookspecs import RegisterTracker, hookimpl
from simpletuner.core.options import option
from simpletuner.core.specs import TrackerSpec, lazy


@attrs.define(kw_only=True)
class WandbOptions:
    """Options of the ``wandb`` tracker; project and run names come from tracker_project_name/tracker_run_name."""

    wandb_entity: str | None = option(
        None, help="W&B team or user to log under; your default entity if unset.", section="validation",
    )
    wandb_mode: str | None = option(
        None, help="online sends data to W&B as it happens; offline keeps it on disk for a later 'wandb sync'; "
        "unset follows WANDB_MODE.", section="validation", choices=("online", "offline"),
    )
    wandb_tags: list[str] = option(factory=list, help="Tags added to the W&B run.", section="validation")


@hookimpl
def register_trackers(register: RegisterTracker) -> None:
    """Register the ``wandb`` tracker."""
    register(TrackerSpec(
        name="wandb", title="Weights & Biases",
        description="Loss, learning rate, grad norm, speed and validation images in a W&B run; resuming "
        "continues the same run.",
        options=WandbOptions, sends_data=True,
        factory=lazy("simpletuner.trackers.wandb.tracker:WandbTracker"),
    ))
