"""Named validation prompts with their own seed, resolution, steps and guidance (no heavy imports).

A library maps a name to a prompt string, or to an object::

    {"cat": "a photo of a cat",
     "wide-city": {"prompt": "a city at night", "seed": 7, "resolution": "1280x768", "steps": 30, "guidance": 4.5,
                   "negative_prompt": "blurry"}}

Unset fields take the run's ``validation_seed``, ``validation_resolution``, ``validation_num_inference_steps``,
``validation_guidance`` and ``validation_negative_prompt``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import attrs

from simpletuner.core.rendering import parse_resolution

_FIELDS = {"prompt", "seed", "resolution", "steps", "guidance", "negative_prompt"}
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


@attrs.frozen
class PromptEntry:
    """One prompt to render, with every setting resolved."""

    name: str
    prompt: str
    seed: int
    width: int
    height: int
    steps: int
    guidance: float | None
    negative_prompt: str | None

    @property
    def slug(self) -> str:
        """The name as it appears in file names."""
        return _UNSAFE.sub("_", self.name).strip("_") or "prompt"


def check_library(library: Mapping[str, Any], key: str) -> None:
    """Raise ``ValueError`` naming the first problem of a prompt library (``$.<key>.<name>.<field>: ...``)."""
    for name, entry in library.items():
        where = f"$.{key}.{name}"
        if not str(name).strip():
            raise ValueError(f"$.{key}: prompt names must not be empty")
        if isinstance(entry, str):
            if not entry.strip():
                raise ValueError(f"{where}: the prompt is empty")
            continue
        if not isinstance(entry, Mapping):
            raise ValueError(f"{where}: expected a prompt string or an object with 'prompt', got {entry!r}")
        unknown = sorted(set(entry) - _FIELDS)
        if unknown:
            raise ValueError(f"{where}: unknown field(s) {', '.join(unknown)}; known: {', '.join(sorted(_FIELDS))}")
        if not isinstance(entry.get("prompt"), str) or not entry["prompt"].strip():
            raise ValueError(f"{where}.prompt: required, a non-empty string")
        for field, kind, minimum in (("seed", int, 0), ("steps", int, 1), ("guidance", float, 0)):
            value = entry.get(field)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int | float) or (kind is int and value != int(value)):
                raise ValueError(f"{where}.{field}: expected {kind.__name__}, got {value!r}")
            if value < minimum:
                raise ValueError(f"{where}.{field}: must be at least {minimum}, got {value!r}")
        if entry.get("resolution") is not None:
            parse_resolution(entry["resolution"], f"{where}.resolution")
        if entry.get("negative_prompt") is not None and not isinstance(entry["negative_prompt"], str):
            raise ValueError(f"{where}.negative_prompt: expected a string")


def resolve_prompts(options: Mapping[str, Any], library: Mapping[str, Any]) -> list[PromptEntry]:
    """The prompts of a validation: ``validation_prompt`` (named ``validation``) then the library's, each once per
    resolution, with the run's defaults filled in."""
    sources: list[tuple[str, Mapping[str, Any]]] = []
    if options.get("validation_prompt"):
        sources.append(("validation", {"prompt": options["validation_prompt"]}))
    for name, entry in library.items():
        sources.append((str(name), {"prompt": entry} if isinstance(entry, str) else entry))
    entries = []
    for name, entry in sources:
        resolution = entry.get("resolution", options.get("validation_resolution", "1024"))
        for width, height in parse_resolution(resolution, f"resolution of prompt {name!r}"):
            guidance = entry.get("guidance", options.get("validation_guidance"))
            entries.append(PromptEntry(
                name=name,
                prompt=entry["prompt"],
                seed=int(entry.get("seed", options.get("validation_seed", 42))),
                width=width,
                height=height,
                steps=int(entry.get("steps", options.get("validation_num_inference_steps", 20))),
                guidance=float(guidance) if guidance is not None else None,
                negative_prompt=entry.get("negative_prompt", options.get("validation_negative_prompt")),
            ))
    return entries
