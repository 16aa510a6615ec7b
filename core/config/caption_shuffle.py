"""A dataset's ``caption_shuffle`` (SimpleTuner's key): each caption also trains as copies whose tags are shuffled.

A caption of tags (``dog, running, park, sunny day``) teaches the model their order unless the order varies. With
``caption_shuffle`` each caption has ``count`` shuffled copies (and itself, with ``include_original``); all are
encoded before training and each visit of the image trains with one of them. The copies are the same in every run
with the same ``seed``: a copy's order comes from a digest of the seed, the copy's number and the caption.

    >>> shuffle = CaptionShuffle(enable=True, count=2, seed=1, position_start=1)
    >>> shuffle.captions_per_caption, shuffle.caption("dog, running, park, sunny day", 0, run_seed=0)
    (3, 'dog, running, park, sunny day')
    >>> sorted(shuffle.caption("dog, running, park, sunny day", 1, run_seed=0).split(", "))
    ['dog', 'park', 'running', 'sunny day']
    >>> shuffle.caption("dog, running, park, sunny day", 1, run_seed=0).startswith("dog, ")
    True
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Mapping
from typing import Any

import attrs

from simpletuner.core.config.converter import ValueTypeError, make_converter, structure_value

#: ``split_on`` values: the text between tags, and how the shuffled tags are joined again.
SEPARATORS = {"comma": (",", ", "), "space": (" ", " "), "period": (".", ". ")}
#: Shuffled copies a caption may have.
MAX_COUNT = 100
#: Shuffles tried for a copy whose order differs from the caption's (two tags keep theirs half of the time).
_ATTEMPTS = 16


@attrs.frozen
class CaptionShuffle:
    """SimpleTuner's ``caption_shuffle`` object of a dataset, as written (``enable`` false: it has no effect)."""

    enable: bool = False
    count: int = 1  # shuffled copies of each caption
    seed: int | None = None  # the run's seed when unset
    split_on: str = "comma"
    position_start: int = 0  # leading tags that keep their place
    include_original: bool = True

    @property
    def captions_per_caption(self) -> int:
        """How many captions each caption becomes: its shuffled copies, and itself with ``include_original``."""
        return self.count + (1 if self.include_original else 0)

    def settings_digest(self, run_seed: int) -> bytes:
        """What the copies depend on besides the caption: their cache keys are made with it."""
        seed = self.seed if self.seed is not None else run_seed
        return hashlib.sha256(f"{seed}\0{self.split_on}\0{self.position_start}".encode()).digest()

    def caption(self, text: str, copy: int, run_seed: int) -> str:
        """Caption ``copy`` (``0 ≤ copy < captions_per_caption``) made from ``text``: ``text`` itself for copy 0
        with ``include_original``, else a shuffled copy whose tags are in another order than the caption's. A
        caption with fewer than ``position_start + 2`` tags has nothing to shuffle and stays as it is."""
        if self.include_original:
            if copy == 0:
                return text
            copy -= 1
        splitter, joiner = SEPARATORS[self.split_on]
        tags = [tag.strip() for tag in text.split(splitter) if tag.strip()]
        fixed, moving = tags[: self.position_start], tags[self.position_start :]
        if len(moving) < 2:
            return text
        seed = self.seed if self.seed is not None else run_seed
        original = list(moving)
        for attempt in range(_ATTEMPTS):  # an order other than the caption's own, as a shuffled copy should be
            digest = hashlib.sha256(f"{seed}\0{copy}\0{attempt}\0{text}".encode()).digest()
            random.Random(int.from_bytes(digest[:8], "little")).shuffle(moving)
            if moving != original:
                break
        return joiner.join(fixed + moving)


_TYPES = {"enable": bool, "count": int, "seed": int, "split_on": str, "position_start": int, "include_original": bool}


def structure_caption_shuffle(value: Any, _: type) -> CaptionShuffle:
    """Read SimpleTuner's ``caption_shuffle`` object, naming every key or value that is not one of its own."""
    if not isinstance(value, Mapping):
        raise ValueTypeError(f"expected an object such as {{\"enable\": true, \"count\": 3}}, got {value!r}")
    unknown = sorted(set(value) - set(_TYPES))
    if unknown:
        raise ValueTypeError(f"unknown key {unknown[0]!r}; caption_shuffle takes {', '.join(_TYPES)}")
    converter = make_converter()
    kwargs: dict[str, Any] = {}
    for name, raw in value.items():
        if raw is None and name == "seed":  # SimpleTuner writes null for "the run's seed"
            continue
        try:
            kwargs[name] = structure_value(converter, raw, _TYPES[name])
        except ValueTypeError as exc:
            raise ValueTypeError(f"{name}: {exc}") from None
    shuffle = CaptionShuffle(**kwargs)
    if shuffle.split_on not in SEPARATORS:
        raise ValueTypeError(f"split_on: expected one of {', '.join(SEPARATORS)}, got {shuffle.split_on!r}")
    if not 1 <= shuffle.count <= MAX_COUNT:
        raise ValueTypeError(f"count: expected 1 to {MAX_COUNT} shuffled copies, got {shuffle.count}")
    if shuffle.position_start < 0:
        raise ValueTypeError(f"position_start: expected 0 or more leading tags, got {shuffle.position_start}")
    return shuffle
