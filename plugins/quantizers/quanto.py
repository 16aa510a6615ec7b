"""Quantising a frozen base model with optimum-quanto before an adapter is attached."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from simpletuner.core.interfaces import Quantizer
from simpletuner.plugins.quantizers import QUANTO_PRECISIONS


class QuantoQuantizer(Quantizer):
    """Replaces ``nn.Linear`` layers by optimum-quanto's ``QLinear`` with frozen low-bit weights.

    ``exclude`` holds shell-style patterns (``fnmatch``) matched against qualified module names, e.g.
    ``("*norm*", "proj_out", "*embedder*")``: matching modules keep their original precision. LoRA layers attached
    afterwards wrap the ``QLinear`` modules (they subclass ``nn.Linear``) and train in full precision.
    """

    def __init__(self, options: Any = None) -> None:
        self.options = options  # quanto declares no options of its own

    def quantize(self, module: Any, precision: str, exclude: Sequence[str] = ()) -> Any:
        """Quantise ``module`` in place to ``precision``, freeze it and return it."""
        from optimum.quanto import freeze, qtypes, quantize

        if precision not in QUANTO_PRECISIONS:
            raise ValueError(f"quanto does not provide {precision!r}; choose one of {', '.join(QUANTO_PRECISIONS)}")
        patterns = list(exclude)
        # quanto matches each pattern against the full qualified name; a bare name also excludes its children.
        patterns += [f"{p}.*" for p in exclude if not p.endswith("*")]
        quantize(module, weights=qtypes[QUANTO_PRECISIONS[precision]], exclude=patterns or None)
        freeze(module)
        module.requires_grad_(False)
        return module
