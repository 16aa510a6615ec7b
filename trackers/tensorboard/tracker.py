"""TensorBoard event files written with tensorboard's own event writer (no TensorFlow, no torch needed).

Images are stored as the PNG/JPEG bytes of the validation files, untouched. On resume the writer records a
``SessionLog.START`` at the resumed step, which tells TensorBoard to discard the events a previous attempt wrote
after that step.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tensorboard.compat.proto.event_pb2 import Event, SessionLog
from tensorboard.compat.proto.summary_pb2 import Summary
from tensorboard.summary.writer.event_file_writer import EventFileWriter

from simpletuner.core.interfaces import RunInfo, Tracker

_UNSAFE_TAG = re.compile(r"[^A-Za-z0-9_./-]+")
_UNSAFE_FOLDER = re.compile(r"[^A-Za-z0-9_.-]+")


class TensorBoardTracker(Tracker):
    """Writes scalars and images to ``<run folder>/<logging_dir>/<run name>``."""

    def __init__(self, options: Any) -> None:
        self._options = options
        self._writer: EventFileWriter | None = None
        self.log_dir: Path | None = None

    def start(self, run: RunInfo) -> None:
        """Open an event file; on resume, mark the resumed step so later steps of the old attempt are purged."""
        base = Path(self._options.logging_dir).expanduser()
        base = base if base.is_absolute() else Path(run.output_dir) / base
        self.log_dir = base / _folder_name(run.run_name)
        self._writer = EventFileWriter(str(self.log_dir), flush_secs=self._options.tensorboard_flush_seconds)
        if run.resumed_step > 0:
            self._add(Event(wall_time=time.time(), step=run.resumed_step + 1,
                            session_log=SessionLog(status=SessionLog.START)))

    def log_scalars(self, step: int, values: Mapping[str, float]) -> None:
        """One event holding every scalar of the step."""
        summary = Summary(value=[Summary.Value(tag=_tag(k), simple_value=float(v)) for k, v in values.items()])
        self._add(Event(wall_time=time.time(), step=step, summary=summary))

    def log_images(self, step: int, images: Mapping[str, Sequence[Path]]) -> None:
        """One image summary per file; tags are ``validation/<caption>`` (``/<n>`` for several per caption)."""
        from PIL import Image

        values = []
        for caption, paths in images.items():
            for index, path in enumerate(paths):
                data = Path(path).read_bytes()
                with Image.open(path) as image:
                    width, height = image.size
                    channels = {"L": 1, "LA": 2, "RGB": 3, "RGBA": 4}.get(image.mode, 3)
                suffix = f"/{index}" if len(paths) > 1 else ""
                values.append(Summary.Value(
                    tag=f"validation/{_tag(caption)}{suffix}",
                    image=Summary.Image(height=height, width=width, colorspace=channels, encoded_image_string=data),
                ))
        self._add(Event(wall_time=time.time(), step=step, summary=Summary(value=values)))

    def finish(self, status: str) -> None:
        """Flush and close the event file."""
        writer = self._require()
        writer.flush()
        writer.close()
        self._writer = None

    def _add(self, event: Event) -> None:
        self._require().add_event(event)

    def _require(self) -> EventFileWriter:
        if self._writer is None:
            raise RuntimeError("the tensorboard tracker was not started")
        return self._writer


def _folder_name(run_name: str) -> str:
    """The run name as one folder name: no separators and no leading dots, so it never leaves the log folder."""
    return _UNSAFE_FOLDER.sub("_", run_name).lstrip(".") or "run"


def _tag(name: str) -> str:
    return _UNSAFE_TAG.sub("_", str(name)).strip("_") or "value"
