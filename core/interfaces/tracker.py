"""The Tracker interface."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs


@attrs.frozen
class RunInfo:
    """What a tracker knows about the run it records: ``output_dir`` is the run's own folder; a resumed run gets a
    new one, and ``resumed_from`` is the run folder of the checkpoint it resumes (None for a fresh run), where a
    tracker finds what it kept to continue the same remote run."""

    project_name: str
    run_name: str
    output_dir: Path
    config: Mapping[str, Any]
    resumed_step: int = 0
    resumed_from: Path | None = None


class Tracker(ABC):
    """Receives metrics and images during training.

    A tracker that fails (no login, disk full) raises; the engine reports the problem once and trains on.

    Example::

        >>> class ListTracker(Tracker):
        ...     def __init__(self): self.rows = []
        ...     def start(self, run): self.rows.append(("start", run.run_name))
        ...     def log_scalars(self, step, values): self.rows.append((step, dict(values)))
        ...     def log_images(self, step, images): pass
        ...     def finish(self, status): self.rows.append(("finish", status))
        >>> t = ListTracker()
        >>> t.start(RunInfo(project_name="p", run_name="r", output_dir=Path("."), config={}))
        >>> t.log_scalars(1, {"loss": 0.5})
        >>> t.finish("completed")
        >>> t.rows
        [('start', 'r'), (1, {'loss': 0.5}), ('finish', 'completed')]
    """

    @abstractmethod
    def start(self, run: RunInfo) -> None:
        """Begin (or, when ``run.resumed_step`` > 0, continue) a run."""

    @abstractmethod
    def log_scalars(self, step: int, values: Mapping[str, float]) -> None:
        """Record scalar metrics (loss, learning rate, grad norm, it/s, epoch) at a global step."""

    @abstractmethod
    def log_images(self, step: int, images: Mapping[str, Sequence[Path]]) -> None:
        """Record images (validation outputs) by caption at a global step; values are image file paths."""

    @abstractmethod
    def finish(self, status: str) -> None:
        """End the run; ``status`` is ``completed``, ``failed`` or ``stopped``."""
