"""Metrics as JSON lines.

Each line is one object: ``{"type": "start", "time", "project", "run", "resumed_step"}``,
``{"type": "scalars", "step", "time", "values": {name: number or null}}``,
``{"type": "images", "step", "time", "images": {caption: [path, ...]}}`` (paths relative to the output folder when
inside it) or ``{"type": "finish", "time", "status"}``. Lines are flushed as they are written, so a reader polling
the file sees each step at once. Non-finite numbers are written as ``null`` (JSON has no NaN).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from simpletuner.core.atomic import atomic_write_text
from simpletuner.core.interfaces import RunInfo, Tracker


class JsonlTracker(Tracker):
    """Appends one JSON object per event to ``local_metrics_file`` under the run's output folder."""

    def __init__(self, options: Any) -> None:
        self._file_option = options.local_metrics_file
        self._handle: IO[str] | None = None
        self._output_dir = Path(".")
        self.path: Path | None = None

    def start(self, run: RunInfo) -> None:
        """Open the file; on resume, drop the rows written after the resumed step (that history was lost)."""
        self._output_dir = Path(run.output_dir)
        path = Path(self._file_option).expanduser()
        self.path = path if path.is_absolute() else self._output_dir / path
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if run.resumed_step > 0 and self.path.exists():
            kept = _rows_up_to(self.path.read_text(encoding="utf-8").splitlines(), run.resumed_step)
            atomic_write_text(self.path, "".join(line + "\n" for line in kept))
        elif self.path.exists():
            self.path.unlink()
        self._handle = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - kept open for the run
        self._write({"type": "start", "time": time.time(), "project": run.project_name, "run": run.run_name,
                     "resumed_step": run.resumed_step})

    def log_scalars(self, step: int, values: Mapping[str, float]) -> None:
        """Write one ``scalars`` row."""
        self._write({"type": "scalars", "step": step, "time": time.time(),
                     "values": {str(k): _number(v) for k, v in values.items()}})

    def log_images(self, step: int, images: Mapping[str, Sequence[Path]]) -> None:
        """Write one ``images`` row of file paths."""
        self._write({"type": "images", "step": step, "time": time.time(),
                     "images": {str(k): [self._relative(Path(p)) for p in paths] for k, paths in images.items()}})

    def finish(self, status: str) -> None:
        """Write the ``finish`` row and close the file."""
        self._write({"type": "finish", "time": time.time(), "status": status})
        assert self._handle is not None
        self._handle.close()
        self._handle = None

    def _write(self, row: dict[str, Any]) -> None:
        if self._handle is None:
            raise RuntimeError("the local tracker was not started")
        self._handle.write(json.dumps(row, allow_nan=False) + "\n")
        self._handle.flush()  # visible to readers at once; fsync per step would cost training time

    def _relative(self, path: Path) -> str:
        try:
            return path.resolve().relative_to(self._output_dir.resolve()).as_posix()
        except ValueError:
            return str(path)


def _number(value: Any) -> float | int | None:
    number = float(value)
    if not math.isfinite(number):
        return None
    return int(number) if isinstance(value, int) and not isinstance(value, bool) else number


def _rows_up_to(lines: list[str], resumed_step: int) -> list[str]:
    """The lines written before the first row past ``resumed_step``: what the resumed run's history really is."""
    kept = []
    for line in lines:
        try:
            row = json.loads(line)
        except ValueError:
            break  # a line cut short by a crash ends the usable history
        if isinstance(row, dict) and isinstance(row.get("step"), int) and row["step"] > resumed_step:
            break
        kept.append(line)
    return kept
