"""The LyCORIS config as a form: the keys most configs change (algorithm, strength, rank and alpha, LoKr's factor,
which layers), each with a label, help and the algorithms it applies to. Keys the form does not show are edited as
JSON beside it and kept as they are."""

from __future__ import annotations

from typing import Any

import attrs

from simpletuner.core.config.lycoris_config import ALGORITHMS, BUILTIN_PRESETS

#: Algorithms whose updates are low-rank factors sized by ``linear_dim`` and scaled by ``linear_alpha``.
_RANKED = ("lora", "locon", "loha", "lokr", "dylora", "glora", "tlora")
#: The key path of the target modules inside ``apply_preset``.
TARGET_MODULES = "apply_preset.target_module"


@attrs.frozen
class LycorisField:
    """One field of the form.

    ``key`` is a top-level key of the config, or ``apply_preset.<key>`` for a key of its ``apply_preset`` object;
    ``kind`` is ``choice``, ``number``, ``integer`` or ``names`` (a list of names typed with commas between them);
    ``algorithms`` lists those the key applies to (every algorithm when None).
    """

    key: str
    label: str
    help: str
    kind: str
    required: bool = False
    choices: tuple[str, ...] | None = None
    algorithms: tuple[str, ...] | None = None

    def to_json(self) -> dict[str, Any]:
        """JSON-ready description."""
        data = attrs.asdict(self)
        for key in ("choices", "algorithms"):
            data[key] = list(data[key]) if data[key] is not None else None
        return data


FIELDS = (
    LycorisField("algo", "Algorithm", "How the update of each targeted layer is built (LoKr, LoCon, LoHa, full, ...).",
                 "choice", required=True, choices=ALGORITHMS),
    LycorisField("multiplier", "Strength (multiplier)", "Scale of the adapter's output while training; 1.0 is usual.",
                 "number"),
    LycorisField("linear_dim", "Rank (linear_dim)", "Rank of the low-rank factors. For LoKr, 10000 asks for "
                 "full-dimension factors, whose size the factor then decides.", "integer", algorithms=_RANKED),
    LycorisField("linear_alpha", "Alpha (linear_alpha)", "Scales the update by alpha / rank; equal to the rank for a "
                 "scale of 1.0.", "number", algorithms=_RANKED),
    LycorisField("factor", "Factor (LoKr)", "Kronecker factor: a smaller factor makes a larger adapter; -1 chooses "
                 "one automatically.", "integer", algorithms=("lokr",)),
    LycorisField("preset", "Layer preset of LyCORIS", "One of LyCORIS' built-in layer selections; leave it unset to "
                 "adapt the target modules below.", "choice", choices=BUILTIN_PRESETS),
    LycorisField(TARGET_MODULES, "Target modules", "Class names of the modules to adapt, separated by commas (the "
                 "presets name the family's transformer blocks).", "names"),
)


def lycoris_form() -> list[dict[str, Any]]:
    """The form's fields, as JSON-ready objects."""
    return [field.to_json() for field in FIELDS]
