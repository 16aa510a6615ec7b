"""Fan-out of metrics and images to the trackers named in ``report_to``.

A tracker that raises — at construction, at start or at any later call (no login, disk full) — is reported once
(logged and passed to the event callback as ``tracker_failed``) and skipped from then on; the others and training go
on. ``report_to: ["none"]`` (the default) builds no tracker, so nothing leaves the machine unless the user asked.

The engine's calls, one line each::

    tracking = Tracking.start(config, registry, run_dir, resumed_step=step, resumed_from=old_run_dir, on_event=emit)
    tracking.log_scalars(step, {"loss": 0.12, "lr": 1e-4, "grad_norm": 0.8, "it_per_s": 1.9, "epoch": 1})
    tracking.log_images(step, {"cat": [Path("validation/step-000100-cat.png")]})
    tracking.finish("completed")
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from simpletuner.core.interfaces import RunInfo, Tracker
from simpletuner.core.plugins import Registry
from simpletuner.core.specs import Kind, normalize_name

logger = logging.getLogger(__name__)

#: Receives ``{"event": "tracker_failed", "tracker": name, "during": call, "error": message}``; must not raise.
EventCallback = Callable[[dict[str, Any]], None]


class Tracking:
    """The active trackers of one run. Every method returns normally whatever the trackers do."""

    def __init__(self, trackers: Mapping[str, Tracker], on_event: EventCallback | None = None) -> None:
        self._trackers: dict[str, Tracker] = dict(trackers)
        self._on_event = on_event
        self.failed: dict[str, str] = {}

    @classmethod
    def start(cls, config: Any, registry: Registry, output_dir: Path, *, resumed_step: int = 0,
              resumed_from: Path | None = None, on_event: EventCallback | None = None) -> Tracking:
        """Build the trackers of ``config.core.report_to`` from the registry and start their run.

        Args:
            config: the loaded ``TrainingConfig`` (report_to, tracker names and each tracker's options).
            registry: the plugin registry the config was loaded with.
            output_dir: the run's own folder (file-based trackers write under it).
            resumed_step: the step training resumes from (0 for a fresh run); trackers continue the same run.
            resumed_from: the run folder holding the checkpoint training resumes from (None for a fresh run).
            on_event: receives a ``tracker_failed`` event per tracker that fails.
        """
        tracking = cls({}, on_event)
        names = [normalize_name(n) for n in config.core.report_to if normalize_name(n) != "none"]
        for name in dict.fromkeys(names):
            try:
                spec = registry.get(Kind.TRACKER, name)
                tracking._trackers[name] = spec.build(config.options_for(spec))
            except Exception as exc:  # an unusable tracker is reported like one that fails later
                tracking._fail(name, "create", exc)
        info = RunInfo(
            project_name=config.core.tracker_project_name,
            run_name=config.core.tracker_run_name,
            output_dir=Path(output_dir),
            config=_plain_config(config),
            resumed_step=resumed_step,
            resumed_from=resumed_from,
        )
        tracking._call("start", lambda t: t.start(info))
        return tracking

    @property
    def names(self) -> list[str]:
        """Trackers still receiving data."""
        return list(self._trackers)

    def log_scalars(self, step: int, values: Mapping[str, float]) -> None:
        """Send scalar metrics (loss, learning rate, grad norm, it/s, epoch) at a global step."""
        self._call("log_scalars", lambda t: t.log_scalars(step, values))

    def log_images(self, step: int, images: Mapping[str, Sequence[Path]]) -> None:
        """Send images by caption (validation outputs) at a global step."""
        self._call("log_images", lambda t: t.log_images(step, images))

    def finish(self, status: str) -> None:
        """End the run on every tracker (``completed``, ``failed`` or ``stopped``)."""
        self._call("finish", lambda t: t.finish(status))
        self._trackers.clear()

    def __enter__(self) -> Tracking:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        if self._trackers:
            self.finish("completed" if exc_type is None else "failed")

    def _call(self, during: str, action: Callable[[Tracker], None]) -> None:
        for name, tracker in list(self._trackers.items()):
            try:
                action(tracker)
            except Exception as exc:  # a tracker's failure must never interrupt training
                self._fail(name, during, exc)

    def _fail(self, name: str, during: str, exc: Exception) -> None:
        self._trackers.pop(name, None)
        message = f"{type(exc).__name__}: {exc}"
        self.failed[name] = message
        logger.warning("tracker %s failed during %s and is skipped for the rest of the run: %s", name, during,
                       message)
        if self._on_event is not None:
            try:
                self._on_event({"event": "tracker_failed", "tracker": name, "during": during, "error": message})
            except Exception:
                logger.exception("event callback failed for tracker_failed")


def _plain_config(config: Any) -> dict[str, Any]:
    """Every option's effective value in JSON-ready form, secrets left out (trackers store the run's config)."""
    return {info.key: config.schema.unstructure(info.key, value)
            for info, value, _source in config.effective() if not info.secret}
