"""Running a model card's usage code as written, on the CPU: the only change is ``"cuda"`` → ``"cpu"``."""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image


def usage_block(card: str) -> str:
    """The card's one Python block."""
    blocks = card.split("```python\n")
    assert len(blocks) == 2, "the card holds one Python block"
    return blocks[1].split("\n```", 1)[0]


def run_as_written(card: Path, workdir: Path) -> tuple[str, np.ndarray, list[Any]]:
    """Execute the usage code of the card at ``card`` in ``workdir``; returns the code, the image it saved (as
    int16 pixels) and the FutureWarnings raised meanwhile about what the code itself names (how diffusers announces
    a deprecated argument); diffusers' deprecations of its own internals (e.g. a class one of its models imports from
    an old place) are not the card's to fix."""
    code = usage_block(card.read_text())
    assert code.count('"cuda"') == 1, code
    previous = Path.cwd()
    os.chdir(workdir)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            exec(compile(code.replace('"cuda"', '"cpu"'), str(card), "exec"), {"__name__": "usage"})
    finally:
        os.chdir(previous)
    image = np.asarray(Image.open(workdir / "output.png"), dtype=np.int16)
    future = [str(w.message) for w in caught if issubclass(w.category, FutureWarning)]
    return code, image, [m for m in future if not re.findall(r"`(\w+)`", m) or
                         any(name in code for name in re.findall(r"`(\w+)`", m))]
