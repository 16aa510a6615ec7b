"""The structured event stream of a training run: one JSON object per line in ``<run folder>/events.jsonl`` (see
:mod:`simpletuner.core.training.run_folders`).

The web UI, the job runner and trackers read it. Every line has ``event`` (its type), ``time`` (Unix seconds, float)
and ``seq`` (0, 1, 2, … within the file's writer; a resumed run writes a file of its own in its new run folder).
Types and their fields:

``run_started``
    ``run_name``, ``project_name``, ``model_family``, ``model_flavour``, ``model_type``, ``pretrained``,
    ``output_dir`` (the configured root), ``run_dir`` (this run's folder), ``num_processes``, ``total_steps``,
    ``steps_per_epoch``, ``resumed_from`` (the checkpoint folder resumed, or null), ``start_step``.
``datasets_scanned``
    ``datasets``: list of ``{"id", "images", "skipped": {reason: count}, "skipped_examples": [path, ...]}``;
    ``buckets``: ``{"WIDTHxHEIGHT": images}``; ``dropped``: ``{"dataset/bucket": samples left out of full batches}``;
    ``bookkeeping_bytes``: memory held for the run's per-image facts (index tables, placements, cache keys, plan).
``cache_progress``
    ``kind`` (``latents`` or ``text``), ``done``, ``total``: while encoding (at most about 100 per kind).
``cache_ready``
    ``kind``, ``total`` (entries needed), ``encoded`` (written this run), ``reused``, ``encoder_calls``.
``step``
    ``step`` (optimizer step, 1-based), ``epoch`` (1-based), ``loss``, ``lr``, ``grad_norm``, ``it_per_s``
    (optimizer steps per second, smoothed), ``eta_s`` (seconds left, estimated), ``data_wait_s`` (time this step
    waited for data).
``checkpoint_saved``
    ``step``, ``path``; ``pruned``: checkpoint folders removed by ``checkpoints_total_limit``.
``validation``
    ``step``, ``method``, ``images`` (file paths), ``message``.
``validation_failed``
    ``step``, ``method``, ``error``: the run goes on.
``script_started`` / ``script_finished`` / ``script_failed``
    forwarded from :mod:`simpletuner.core.scripts` (post-checkpoint and post-upload commands), with its fields.
``tracker_failed``
    ``tracker``, ``during`` (the call that failed), ``error``: forwarded from :mod:`simpletuner.core.tracking`;
    that tracker is skipped for the rest of the run.
``warning``
    ``message``: something the run works around but the user should know (e.g. oversubscribed buckets).
``finished``
    ``step``, ``output`` (the final model file or folder), ``elapsed_s``, ``published`` (``{publisher: location}``
    of the final model's successful publications), ``usage`` (Python code that loads the final model from the run
    folder into the family's diffusers pipeline; see :mod:`simpletuner.core.usage`).
``published`` / ``publish_failed``
    forwarded from :mod:`simpletuner.core.publishing`: ``publisher``, ``what`` (``model`` or ``checkpoint``),
    ``step``, and ``location`` or ``error``.
``failed``
    ``step`` (or null before training began), ``error`` (one line), ``error_type``.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

EVENTS_FILE = "events.jsonl"

#: A listener receives every event dict after it is written; it must not raise.
Listener = Callable[[dict[str, Any]], None]


#: Events written often enough that flushing each one would cost the training step time: they reach the file at
#: most :attr:`EventWriter.flush_interval` seconds late. Every other event flushes at once (with any before it).
DEFERRED_FLUSH = frozenset({"step"})


class EventWriter:
    """Appends events to a JSONL file and passes them to listeners.

    Each event is flushed as it is written, except ``step`` events (:data:`DEFERRED_FLUSH`), which are flushed
    at most ``flush_interval`` seconds after they are written (by the next event, or by a background flush):
    a fast run writes many per interval and a flush per step would cost it measurable time, while readers of
    the file (the job runner polls it) see them promptly. A writer made with ``path=None`` writes nothing but
    still calls listeners (non-main processes use one).

    >>> import tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> with EventWriter(folder / EVENTS_FILE) as events:
    ...     _ = events.emit("step", step=1, loss=0.5)
    >>> [e["event"] for e in read_events(folder / EVENTS_FILE)], read_events(folder / EVENTS_FILE)[0]["loss"]
    (['step'], 0.5)
    """

    def __init__(self, path: Path | None, listeners: list[Listener] | None = None, *,
                 flush_interval: float = 0.05) -> None:
        if flush_interval < 0:
            raise ValueError(f"flush_interval must be >= 0 seconds, got {flush_interval}")
        self.path = path
        self.listeners = list(listeners or [])
        self.flush_interval = flush_interval
        self._lock = threading.Lock()
        self._seq = 0
        self._handle: TextIO | None = None
        self._last_flush = -math.inf  # the first event flushes at once, whatever the clock reads
        self._pending = threading.Event()  # written, not yet flushed
        self._closed = threading.Event()
        self._flusher: threading.Thread | None = None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._handle = path.open("a", encoding="utf-8")

    def failed(self, exc: BaseException, step: int | None) -> dict[str, Any]:
        """Write the ``failed`` event of ``exc``: its first line (or its type when it has no message)."""
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return self.emit("failed", step=step, error=message, error_type=type(exc).__name__)

    def emit(self, event: str, **fields: Any) -> dict[str, Any]:
        """Write one event and return it."""
        with self._lock:
            record = {"event": event, "time": time.time(), "seq": self._seq, **fields}
            self._seq += 1
            if self._handle is not None:
                self._handle.write(json.dumps(record, default=str) + "\n")
                now = time.monotonic()
                if event not in DEFERRED_FLUSH or now - self._last_flush >= self.flush_interval:
                    self._flush(now)
                else:
                    self._defer()
        for listener in self.listeners:
            listener(record)
        return record

    def forward(self, record: dict[str, Any]) -> None:
        """Write an event dict made elsewhere (``{"event": name, ...}``), e.g. by hook scripts."""
        fields = {k: v for k, v in record.items() if k not in ("event", "time", "seq")}
        self.emit(str(record.get("event", "message")), **fields)

    def close(self) -> None:
        """Flush and close the file."""
        with self._lock:
            if self._handle is not None:
                self._handle.close()
                self._handle = None
        self._closed.set()
        self._pending.set()  # wakes the background flush, which ends once the file is closed
        if self._flusher is not None:
            self._flusher.join(timeout=5)
            self._flusher = None

    def _flush(self, now: float) -> None:
        assert self._handle is not None
        self._handle.flush()
        self._last_flush = now
        self._pending.clear()

    def _defer(self) -> None:
        self._pending.set()
        if self._flusher is None:
            self._flusher = threading.Thread(target=self._flush_later, daemon=True, name="simpletuner-events")
            self._flusher.start()

    def _flush_later(self) -> None:
        """Background flush of deferred events, ``flush_interval`` after the last flush, until the file closes."""
        while True:
            self._pending.wait()
            with self._lock:
                if self._handle is None:
                    return
                due = self._last_flush + self.flush_interval
            if self._closed.wait(max(0.0, due - time.monotonic())):
                return
            with self._lock:
                if self._handle is None:
                    return
                if self._pending.is_set():
                    self._flush(time.monotonic())

    def __enter__(self) -> EventWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_events(path: Path) -> list[dict[str, Any]]:
    """Every complete event of a file (a torn last line, from a killed writer, is ignored)."""
    events = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            events.append(json.loads(line))
        except ValueError:
            continue
    return events
