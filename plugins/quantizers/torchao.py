"""Quantising a frozen base model with torchao's weight-only configs before an adapter is attached."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from simpletuner.core.interfaces import Quantizer
from simpletuner.core.interfaces.quantizer import excluded
from simpletuner.plugins.quantizers import TORCHAO_PRECISIONS


class TorchaoQuantizer(Quantizer):
    """Replaces the weights of ``nn.Linear`` layers by torchao's quantised tensors (int8 or float8, one scale per
    output channel); the layers stay ``nn.Linear``, so PEFT's LoRA wraps them (its torchao layer) and trains in full
    precision beside them.

    ``exclude`` holds shell-style patterns (``fnmatch``) matched against qualified module names; a matching module
    and everything under it keep their original precision.
    """

    def __init__(self, options: Any = None) -> None:
        self.options = options  # torchao declares no options of its own

    def quantize(self, module: Any, precision: str, exclude: Sequence[str] = ()) -> Any:
        """Quantise ``module`` in place to ``precision``, freeze it and return it."""
        import torch
        import torchao.quantization as quantization

        if precision not in TORCHAO_PRECISIONS:
            raise ValueError(f"torchao does not provide {precision!r}; choose one of "
                             f"{', '.join(TORCHAO_PRECISIONS)}")
        config = getattr(quantization, TORCHAO_PRECISIONS[precision])()

        def wanted(layer: Any, name: str) -> bool:
            return isinstance(layer, torch.nn.Linear) and not excluded(name, exclude)

        module.requires_grad_(False)
        quantization.quantize_(module, config, filter_fn=wanted)
        return module

