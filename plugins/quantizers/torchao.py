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

    A quantised tensor answers ``F.linear`` itself, before autocast would cast the input, so each quantised layer
    casts its input as autocast casts a plain ``nn.Linear``'s. Without that, the float32 that CUDA autocast's
    LayerNorm returns would flow through every quantised layer in float32: more activation memory and slower
    matmuls than the unquantised model.
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
        for name, layer in module.named_modules():
            if wanted(layer, name):
                layer.register_forward_pre_hook(_input_as_autocast_casts)
        return module


def _input_as_autocast_casts(layer: Any, args: tuple[Any, ...]) -> tuple[Any, ...] | None:
    """A forward pre-hook: the input in autocast's dtype when autocast is on for its device (else unchanged)."""
    import torch

    x = args[0] if args else None
    if not isinstance(x, torch.Tensor) or not x.is_floating_point() or not torch.is_autocast_enabled(x.device.type):
        return None
    dtype = torch.get_autocast_dtype(x.device.type)
    return None if x.dtype == dtype else (x.to(dtype), *args[1:])

