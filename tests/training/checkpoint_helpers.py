"""Helpers of the checkpoint-file tests: a planted pickle that would leave a marker file if loaded, and a guard that
puts the process-wide random states back (a uniquely named module: test folders share one import namespace)."""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


class Payload:
    """Unpickling this calls ``Path.touch(marker)``: code a planted checkpoint file would run if it were loaded."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.touch, (self.marker,))


def plant_pickle(file: Path, marker: Path) -> None:
    """Write ``file`` as ``torch.save`` would, holding a :class:`Payload` where a state dict belongs."""
    import torch

    torch.save({"state": Payload(marker), "param_groups": []}, file)


@contextmanager
def global_rng_kept() -> Iterator[None]:
    """Restore Python's, NumPy's and torch's global random states on exit."""
    import numpy as np
    import torch

    saved = random.getstate(), np.random.get_state(), torch.get_rng_state()
    try:
        yield
    finally:
        random.setstate(saved[0])
        np.random.set_state(saved[1])
        torch.set_rng_state(saved[2])
