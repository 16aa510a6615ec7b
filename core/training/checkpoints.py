"""Checkpoints ``<run folder>/checkpoint-<step>`` (see :mod:`~simpletuner.core.training.run_folders`): written
aside, then renamed, so a folder with that name is always complete; ``latest`` only ever picks complete ones. Holds
the trained weights, optimizer, scheduler, every rank's RNG states and the data position, so a resumed run continues
exactly where the saved one was.

Optimizer, scheduler, RNG and EMA states are :mod:`~simpletuner.core.training.state_files` (safetensors with a JSON
structure), which load without running code: a checkpoint may come from a user who is not trusted to run code.
Checkpoints of earlier versions hold pickles (``*.pt``) instead; they are refused, not loaded, since loading a pickle
runs whatever functions it names. Under DeepSpeed or FSDP the sharded model and optimizer state is accelerate's
(:func:`simpletuner.core.training.saving.restore_sharded_state`), in accelerate's own file formats.
"""

from __future__ import annotations

import errno
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
from simpletuner.core.training.state_files import DamagedStateError, check_like, load_into, write_state

STATE_FILE = "training_state.json"  # written last: its presence marks a complete checkpoint
OPTIMIZER_FILE = "optimizer.safetensors"
SCHEDULER_FILE = "scheduler.safetensors"
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


def resolve_resume(latest: Callable[[], Path | None], value: str | None,
                   resolve: Callable[[str], Path]) -> Path | None:
    """The checkpoint to resume: ``latest`` (what the ``latest`` callable finds; None when there is none yet) or a
    given folder, which must be complete and not one of the pickled checkpoints of earlier versions."""
    if not value:
        return None
    if value == "latest":
        path = latest()
    else:
        path = resolve(value)
        if not (path / STATE_FILE).is_file():
            raise SimpleTunerError(f"resume_from_checkpoint {str(path)!r} is not a complete checkpoint folder (no "
                                   f"{STATE_FILE}); give 'latest' or a checkpoint-<step> folder")
    if path is not None:
        _refuse_pickles(path)
    return path


def _refuse_pickles(path: Path) -> None:
    # checked before any heavy work; this version writes no *.pt file, so one there is an old or planted pickle
    pickles = sorted(p.name for p in path.glob("*.pt"))
    if pickles:
        raise SimpleTunerError(f"checkpoint {path} holds pickle files ({', '.join(pickles)}), as earlier versions of "
                               f"SimpleTuner wrote them; loading a pickle can run code, so it is not resumed. Resume "
                               f"from a checkpoint this version wrote, or start fresh (unset resume_from_checkpoint)")


def rng_file(rank: int) -> str:
    """The RNG-state file of a rank."""
    return f"rng_state_{rank}.safetensors"


def capture_rng(generator: Any) -> dict[str, Any]:
    """Every random state a step draws from: Python, NumPy, torch (CPU and CUDA) and the noise generator, as plain
    values and tensors (NumPy's key array as a list of ints)."""
    import numpy as np
    import torch

    algorithm, keys, *rest = np.random.get_state()
    state = {"python": random.getstate(), "numpy": (algorithm, [int(k) for k in keys], *rest),
             "torch": torch.get_rng_state(), "generator": generator.get_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: Mapping[str, Any], generator: Any) -> None:
    """Put back what :func:`capture_rng` saved (each setter checks the shape of its own state)."""
    import numpy as np
    import torch

    random.setstate(state["python"])
    algorithm, keys, *rest = state["numpy"]
    np.random.set_state((algorithm, np.array(keys, dtype=np.uint32), *rest))
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
        staging = self.staging(step)
        final = self.output_dir / f"checkpoint-{step}"
        if self.is_main:
            shutil.rmtree(staging, ignore_errors=True)
            staging.mkdir(parents=True)
        self.barrier()
        write_state(staging / rng_file(self.rank), capture_rng(generator))
        if collective is not None:
            collective(staging)
        self.barrier()
        pruned: list[Path] = []
        if self.is_main:
            try:
                weights(staging)
                if optimizer is not None:
                    write_state(staging / OPTIMIZER_FILE, optimizer.state_dict())
                write_state(staging / SCHEDULER_FILE, scheduler.state_dict())
                atomic_write_json(staging / STATE_FILE, dict(state))
            except OSError as exc:  # e.g. a full disk: the half-written one goes, earlier checkpoints stay as they are
                shutil.rmtree(staging, ignore_errors=True)
                raise self._write_error(step, exc) from exc
            if final.exists():
                atomic_remove_tree(final)
            os.rename(staging, final)
            pruned = self._prune()
        self.barrier()
        return final, pruned

    def _write_error(self, step: int, exc: OSError) -> SimpleTunerError:
        found = complete_checkpoints(self.output_dir)
        kept = f"; {found[-1][1].name} is intact and can be resumed" if found else ""
        reason = "the disk is full" if exc.errno in (errno.ENOSPC, errno.EDQUOT) else exc.strerror or str(exc)
        return SimpleTunerError(f"checkpoint-{step} could not be written to {self.output_dir}: {reason}{kept}")

    def _prune(self) -> list[Path]:
        if not self.total_limit:
            return []
        found = complete_checkpoints(self.output_dir)
        doomed = [path for _, path in found[: max(0, len(found) - self.total_limit)]]
        for path in doomed:
            atomic_remove_tree(path)
        return doomed


def load_state(path: Path) -> dict[str, Any]:
    """A checkpoint's step (``global_step``) and seed; :class:`DamagedStateError` unless its state file is the JSON
    object :class:`CheckpointWriter` writes."""
    file = path / STATE_FILE
    try:
        state = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as exc:
        raise DamagedStateError(file, f"not readable JSON: {exc}") from None
    if not isinstance(state, dict) or type(state.get("global_step")) is not int or state["global_step"] < 0:
        raise DamagedStateError(file, "no whole-number global_step")
    return state


def load_optimizer_and_scheduler(path: Path, optimizer: Any, scheduler: Any) -> None:
    """Restore the optimizer (unless None: restored by accelerate with sharded state) and scheduler of a
    checkpoint."""
    if optimizer is not None:
        load_into(path / OPTIMIZER_FILE, lambda state: optimizer.load_state_dict(_checked_optimizer_state(state)))

    def load_scheduler(state: Any) -> None:
        # a scheduler copies every entry onto itself: only its own attributes, each of its own kind, may come in
        check_like(state, scheduler.state_dict(), "scheduler state")
        scheduler.load_state_dict(state)

    load_into(path / SCHEDULER_FILE, load_scheduler)


def _checked_optimizer_state(state: Any) -> Any:
    """``state`` when it has an optimizer state dict's layout (torch checks group sizes and casts tensors itself)."""
    if not isinstance(state, dict) or set(state) != {"state", "param_groups"}:
        raise ValueError("not an optimizer state: expected exactly 'state' and 'param_groups'")
    groups, per_parameter = state["param_groups"], state["state"]
    if not (isinstance(groups, list)
            and all(isinstance(g, dict) and isinstance(g.get("params"), list) for g in groups)):
        raise ValueError("param_groups is not a list of groups with 'params'")
    if not (isinstance(per_parameter, dict) and all(type(k) is int and isinstance(v, dict)
                                                    for k, v in per_parameter.items())):
        raise ValueError("state is not a mapping of parameter index to parameter state")
    return state


def load_rng(path: Path, rank: int, generator: Any) -> None:
    """Restore this rank's random states (a checkpoint from a different process count cannot be resumed)."""
    file = path / rng_file(rank)
    if not file.is_file():
        raise SimpleTunerError(f"checkpoint {path} has no random state for process {rank}; resume it with the "
                               f"number of processes it was saved with")
    load_into(file, lambda state: restore_rng(state, generator))


def load_ema(file: Path, ema: Any) -> None:
    """Restore a diffusers ``EMAModel`` from ``file``; its averaged tensors must match the model's in number and
    shape."""

    def apply(state: Any) -> None:
        live = ema.state_dict()
        check_like(state, live, "EMA state")
        if "shadow_params" in state:
            # read onto the CPU; the average is updated in place against the parameters, on their device
            state["shadow_params"] = [t.to(p.device) for t, p in zip(state["shadow_params"], live["shadow_params"],
                                                                    strict=True)]
        ema.load_state_dict(state)

    load_into(file, apply)
