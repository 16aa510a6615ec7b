"""Starting points for a ``lycoris_config.json``, one per common LyCORIS algorithm, targeting every linear layer of
the family's repeated transformer blocks (the classes FSDP2 wraps and regional compilation compiles), so they fit any
family without knowing its attention class names."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

#: Algorithm → (title, what it trades, settings). ``linear_dim: 10000`` asks LoKr for full-dimension factors, whose
#: size ``factor`` then decides, as SimpleTuner's own LoKr examples do.
ALGORITHM_PRESETS: dict[str, tuple[str, str, dict[str, Any]]] = {
    "lokr": ("LoKr", "Kronecker-factored updates: small files, strong likeness; the factor sets the size "
             "(smaller factor, larger adapter).",
             {"algo": "lokr", "multiplier": 1.0, "linear_dim": 10000, "linear_alpha": 1, "factor": 16}),
    "locon": ("LoCon", "LoRA on linear and convolution layers; the rank (linear_dim) sets the size.",
              {"algo": "locon", "multiplier": 1.0, "linear_dim": 32, "linear_alpha": 16}),
    "loha": ("LoHa", "Hadamard product of two low-rank pairs: more expressive than LoRA at the same rank.",
             {"algo": "loha", "multiplier": 1.0, "linear_dim": 16, "linear_alpha": 8}),
    "full": ("Full", "A full-size difference for every targeted weight: the most capacity, the largest file "
             "and the most memory.", {"algo": "full", "multiplier": 1.0}),
}


def lycoris_presets(block_classes: Sequence[str]) -> list[dict[str, Any]]:
    """The presets for a family whose repeated blocks are ``block_classes``, as JSON-ready objects."""
    target = {"target_module": list(block_classes)} if block_classes else {"target_module": ["Attention",
                                                                                              "FeedForward"]}
    return [{"name": name, "title": title, "description": description,
             "config": {**settings, "apply_preset": dict(target)}}
            for name, (title, description, settings) in ALGORITHM_PRESETS.items()]
