"""Feeding cached batches to the loop from a background thread, so the step never waits on disk reads."""

from __future__ import annotations

import os
import queue
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

import attrs

from simpletuner.core.training.data import TrainingData
from simpletuner.core.training.sampler import SampleRef


@attrs.frozen
class Batch:
    """One rank's micro-batch: stacked latents and stacked text embeddings, with where it sits in the epoch, and
    each sample's image geometry (:func:`image_geometry`)."""

    epoch: int
    index: int  # the global batch's position in its epoch
    latents: Any
    text: dict[str, Any]
    geometry: Any = None
    dataset: int = 0  # the dataset the batch is drawn from (every batch is of one dataset)


#: Bytes of decoded cache entries each batch reader keeps in memory (per process) unless the config says otherwise
#: (``batch_memory_cache_mb``).
MEMORY_BUDGET = 1 << 30


class SampleMemory:
    """Cache entries kept decoded in memory after their first read, up to ``budget`` bytes; entries beyond it are
    read from storage every time.

    Reading an entry costs file-system calls, a header check and decoding on every visit, i.e. every epoch; most
    LoRA datasets fit in memory whole. Each epoch visits every sample once in a new order, so keeping the first
    entries that fit serves as many reads as any eviction policy would, with nothing to maintain.
    """

    def __init__(self, budget: int = MEMORY_BUDGET) -> None:
        self.budget = budget
        self.used = 0
        self._entries: dict[tuple[int, str], dict[str, Any]] = {}

    def read(self, store: Any, key: str) -> dict[str, Any]:
        """``store.read(key)``, from memory when it was read before and fitted."""
        slot = (id(store), key)
        entry = self._entries.get(slot)
        if entry is None:
            entry = store.read(key)
            size = sum(t.numel() * t.element_size() for t in entry.values())
            if self.used + size <= self.budget:
                self._entries[slot] = entry
                self.used += size
        return entry


def load_batch(data: TrainingData, refs: Sequence[SampleRef], memory: SampleMemory | None = None, epoch: int = 0,
               position: int = 0) -> tuple[Any, dict[str, Any]]:
    """Read and stack the cached latents and embeddings of ``refs``, global batch ``position`` of ``epoch`` (which
    picks the caption of a sample with several), through ``memory`` when given."""
    import torch

    def read(store: Any, key: str) -> dict[str, Any]:
        return memory.read(store, key) if memory is not None else store.read(key)

    latents = []
    texts: dict[str, list[Any]] = {}
    for ref in refs:
        latents.append(read(*data.latent_entry(ref.dataset, ref.index))["latents"])
        for name, tensor in read(*data.text_entry(ref.dataset, ref.index, epoch, position)).items():
            texts.setdefault(name, []).append(tensor)
    return torch.stack(latents), {name: torch.stack(values) for name, values in texts.items()}


def image_geometry(data: TrainingData, refs: Sequence[SampleRef]) -> Any:
    """A ``B×6`` int64 tensor of each sample's (original height, original width, crop top, crop left, trained
    height, trained width) in pixels: the image file's size, where its bucket's crop starts in the resized image,
    and the bucket's size (the size and crop conditions SDXL-style models take)."""
    import torch

    rows = []
    for ref in refs:
        sample = data.datasets[ref.dataset].samples[ref.index]
        placement = sample.placement
        left, top = placement.crop_box[:2]
        rows.append((sample.height, sample.width, top, left, placement.height, placement.width))
    return torch.tensor(rows, dtype=torch.int64)


#: When set, each rank appends ``epoch<TAB>index<TAB>dataset<TAB>path<TAB>caption choice`` per sample it trains on to
#: ``$SIMPLETUNER_SAMPLE_LOG.<rank>``: a debugging aid for data order (and the caption picked of a sample with
#: several) across processes and resumes.
SAMPLE_LOG_ENV = "SIMPLETUNER_SAMPLE_LOG"


class BatchStream:
    """Yields a rank's batches from ``(epoch, index)`` onwards, epoch after epoch, read ``depth`` batches ahead
    (entries that fit in ``memory_budget`` bytes are read from storage once: :class:`SampleMemory`).

    ``wait_seconds`` accumulates the time the consumer spent blocked on the queue (the data-loader stall).

    Reading a batch is mostly Python (file reads, header checks, stacking), so the reader thread competes with
    the training step for the interpreter lock; in the forward pass, which dispatches one operation after another
    from Python, every switch to the reader stalls the step. Once the reader is ``depth - 1`` batches ahead it
    therefore reads the next batch only when the consumer calls :meth:`quiet` (the loop does before its backward
    pass, which runs without the lock) or runs low.
    """

    def __init__(self, data: TrainingData, rank: int, start_epoch: int, start_index: int, *, depth: int = 4,
                 geometry: bool = False, memory_budget: int = MEMORY_BUDGET, pin_memory: bool = False) -> None:
        if depth < 3:
            raise ValueError(f"depth must be at least 3 (got {depth}): the reader keeps depth - 1 batches ready")
        self.data = data
        self.rank = rank
        self._geometry = geometry  # only families that take image geometry need it read
        # page-locked batches copy to a CUDA GPU asynchronously (the loop's non_blocking copies overlap compute)
        self._pin = pin_memory
        self.wait_seconds = 0.0
        self._depth = depth
        self._memory = SampleMemory(memory_budget)
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=depth)
        self._turn = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._produce, args=(start_epoch, start_index), daemon=True,
                                        name="simpletuner-batches")
        self._thread.start()

    def _produce(self, epoch: int, index: int) -> None:
        log_base = os.environ.get(SAMPLE_LOG_ENV)
        log = open(f"{log_base}.{self.rank}", "a", encoding="utf-8") if log_base else None  # noqa: SIM115
        try:
            while not self._stop.is_set():
                plan = self.data.planner.epoch(epoch)
                for position in range(index, len(plan)):
                    self._await_turn()
                    if self._stop.is_set():
                        return
                    refs = self.data.planner.rank_slice(plan[position], self.rank)
                    if self.data.ondemand is not None:
                        self.data.ondemand.ensure(refs)
                    latents, text = load_batch(self.data, refs, self._memory, epoch, position)
                    if self._pin:
                        latents, text = latents.pin_memory(), {k: v.pin_memory() for k, v in text.items()}
                    if log is not None:
                        for ref in refs:
                            sample = self.data.datasets[ref.dataset].samples[ref.index]
                            choice = self.data.caption_choice(ref.dataset, ref.index, epoch, position)
                            log.write(f"{epoch}\t{position}\t{sample.dataset_id}\t{sample.path}\t{choice}\n")
                        log.flush()
                    geometry = image_geometry(self.data, refs) if self._geometry else None
                    if not self._put(Batch(epoch, position, latents, text, geometry, refs[0].dataset)):
                        return
                epoch, index = epoch + 1, 0
        except BaseException as exc:  # surfaced in the consumer's thread
            self._put(exc)
        finally:
            if log is not None:
                log.close()

    def _await_turn(self) -> None:
        """Return at once while fewer than ``depth - 1`` batches wait; else when the consumer hands a turn."""
        if self._queue.qsize() >= self._depth - 1:
            self._turn.wait()  # close() hands a turn too
        self._turn.clear()

    def quiet(self) -> None:
        """Tell the reader that the consumer is about to leave Python for a while (a good time to read)."""
        self._turn.set()

    def _put(self, item: Any) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def __iter__(self) -> Iterator[Batch]:
        return self

    def __next__(self) -> Batch:
        if self._queue.qsize() < self._depth - 1:
            self._turn.set()  # running low: read now, quiet or not
        started = time.perf_counter()
        item = self._queue.get()
        self.wait_seconds += time.perf_counter() - started
        if isinstance(item, BaseException):
            raise item
        return item

    def close(self) -> None:
        """Stop the reader thread."""
        self._stop.set()
        self._turn.set()
        self._thread.join(timeout=5)
