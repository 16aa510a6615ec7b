"""Checkpoints ``output_dir/checkpoint-<step>``: written aside, then renamed, so a folder with that name is always
complete; ``latest`` only ever picks complete ones. Holds the trained weights, optimizer, scheduler, every rank's RNG
states and the data position, so a resumed run continues exactly where the saved one was.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from simpletuner.core.atomic import atomic_remove_tree, atomic_write_json
from simpletuner.core.errors import SimpleTunerError

STATE_FILE = "training_state.json"  # written last: its presence marks a complete checkpoint
OPTIMIZER_FILE = "optimizer.pt"
SCHEDULER_FILE = "scheduler.pt"
_NAME = re.compile(r"^checkpoint-(\d+)$")


def complete_checkpoints(output_dir: Path) -> list[tuple[int, Path]]:
    """Complete checkpoints by step, oldest first; half-written or foreign folders are ignored."""
    if not output_dir.is_dir():
        return []
    found = []
    for child in output_dir.iterdir():
        match = _NAME.match(child.name)
        if match and child.is_dir() and (child / STATE_FILE).is_file():
            found.append((int(match.group(1)), child))
    return sorted(found)


def resolve_resume(output_dir: Path, value: str | None, resolve: Callable[[str], Path]) -> Path | None:
    """The checkpoint to resume: ``latest`` (None when there is none yet) or a given folder, which must be complete."""
    if not value:
        return None
    if value == "latest":
        found = complete_checkpoints(output_dir)
        return found[-1][1] if found else None
    path = resolve(value)
    if not (path / STATE_FILE).is_file():
        raise SimpleTunerError(f"resume_from_checkpoint {str(path)!r} is not a complete checkpoint folder (no "
                               f"{STATE_FILE}); give 'latest' or a checkpoint-<step> folder")
    return path


def rng_file(rank: int) -> str:
    """The RNG-state file of a rank."""
    return f"rng_state_{rank}.pt"


def capture_rng(generator: Any) -> dict[str, Any]:
    """Every random state a step draws from: Python, NumPy, torch (CPU and CUDA) and the noise generator."""
    import numpy as np
    import torch

    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state(),
             "generator": generator.get_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: Mapping[str, Any], generator: Any) -> None:
    """Put back what :func:`capture_rng` saved."""
    import numpy as np
    import torch

    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    generator.set_state(state["generator"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class CheckpointWriter:
    """Writes and prunes checkpoints across ranks; ``barrier`` synchronises processes (a no-op alone)."""

    def __init__(self, output_dir: Path, *, rank: int, is_main: bool, barrier: Callable[[], None],
                 total_limit: int | None) -> None:
        self.output_dir = output_dir
        self.rank = rank
        self.is_main = is_main
        self.barrier = barrier
        self.total_limit = total_limit

    def staging(self, step: int) -> Path:
        """The folder a checkpoint is written into before its rename."""
        return self.output_dir / f".checkpoint-{step}.partial"

    def save(self, step: int, *, weights: Callable[[Path], None], optimizer: Any, scheduler: Any,
             generator: Any, state: Mapping[str, Any],
             collective: Callable[[Path], None] | None = None) -> tuple[Path, list[Path]]:
        """Write ``checkpoint-<step>`` and prune; returns its path and the pruned folders.

        ``weights`` runs on the main process; ``collective`` (e.g. accelerate's ``save_state`` of sharded model and
        optimizer state) on every process. ``optimizer`` None leaves the optimizer to ``collective``."""
        import torch

        staging = self.staging(step)
        final = self.output_dir / f"checkpoint-{step}"
        if self.is_main:
            shutil.rmtree(staging, ignore_errors=True)
            staging.mkdir(parents=True)
        self.barrier()
        torch.save(capture_rng(generator), staging / rng_file(self.rank))
        if collective is not None:
            collective(staging)
        self.barrier()
        pruned: list[Path] = []
        if self.is_main:
            weights(staging)
            if optimizer is not None:
                torch.save(optimizer.state_dict(), staging / OPTIMIZER_FILE)
            torch.save(scheduler.state_dict(), staging / SCHEDULER_FILE)
            atomic_write_json(staging / STATE_FILE, dict(state))
            if final.exists():
                atomic_remove_tree(final)
            os.rename(staging, final)
            pruned = self._prune()
        self.barrier()
        return final, pruned

    def _prune(self) -> list[Path]:
        if not self.total_limit:
            return []
        found = complete_checkpoints(self.output_dir)
        doomed = [path for _, path in found[: max(0, len(found) - self.total_limit)]]
        for path in doomed:
            atomic_remove_tree(path)
        return doomed


def load_state(path: Path) -> dict[str, Any]:
    """A checkpoint's data position and step."""
    return json.loads((path / STATE_FILE).read_text(encoding="utf-8"))


def load_optimizer_and_scheduler(path: Path, optimizer: Any, scheduler: Any) -> None:
    """Restore the optimizer (unless None: restored by accelerate with sharded state) and scheduler of a
    checkpoint."""
    import torch

    if optimizer is not None:
        optimizer.load_state_dict(torch.load(path / OPTIMIZER_FILE, map_location="cpu", weights_only=False))
    scheduler.load_state_dict(torch.load(path / SCHEDULER_FILE, map_location="cpu", weights_only=False))


def load_rng(path: Path, rank: int, generator: Any) -> None:
    """Restore this rank's random states (a checkpoint from a different process count cannot be resumed)."""
    import torch

    file = path / rng_file(rank)
    if not file.is_file():
        raise SimpleTunerError(f"checkpoint {path} has no random state for process {rank}; resume it with the "
                               f"number of processes it was saved with")
    restore_rng(torch.load(file, map_location="cpu", weights_only=False), generator)
