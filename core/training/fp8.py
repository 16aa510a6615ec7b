"""Float8 training of the trained model's linear layers (``fp8_training``) with torchao's float8 training
(dynamic scaling): the matmuls of the forward and backward passes run in float8 on GPUs that have float8 tensor cores.

The float8 matmul (``torch._scaled_mm``) needs the inner dimension of each operand and both dimensions of its second
operand to be multiples of 16. Only layers whose both dimensions are multiples of 16 convert, which covers the outer
dimensions of all three matmuls (output, input gradient, weight gradient); the inner dimension of the weight-gradient
matmul is the number of rows the layer saw (batch × tokens: 1 in a time-embedding layer at batch size 1, any count for
a caption's tokens), so torchao pads the inner dimensions with zeros (``pad_inner_dim``), which leaves the products
unchanged. LoRA layers added afterwards wrap the converted base layers and stay in the compute precision. A family
declares whether it trains this way (``fp8_training`` of its spec); its quantization exclusions stay in bf16.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from simpletuner.core.interfaces.quantizer import excluded
from simpletuner.core.training.resolve import TrainingSetupError

#: The first NVIDIA architecture with float8 tensor cores (Ada Lovelace, compute capability 8.9).
MIN_CAPABILITY = (8, 9)

#: Run the float8 layers through torchao's emulation (the same casts and scales, the matmul in fp32) on any device.
#: For the test suite only, which has no float8 GPU; no option reaches it.
_emulate = False


def fp8_problem(device: Any) -> str | None:
    """Why float8 training cannot run on ``device`` (None when it can)."""
    import torch

    if not _emulate:
        if torch.device(device).type != "cuda":
            return ("fp8_training needs an NVIDIA GPU with float8 tensor cores (compute capability 8.9 or newer: "
                    "Ada, Hopper, Blackwell) and this run has none; turn fp8_training off")
        capability = torch.cuda.get_device_capability(device)
        if capability < MIN_CAPABILITY:
            return (f"fp8_training needs compute capability 8.9 or newer (Ada, Hopper, Blackwell); "
                    f"{torch.cuda.get_device_name(device)} has {capability[0]}.{capability[1]}; turn fp8_training "
                    "off")
    try:
        import torchao.float8  # noqa: F401
    except ImportError:
        return "fp8_training needs torchao: pip install torchao"
    return None


def _convertible(module: Any, name: str, exclude: Sequence[str] = ()) -> bool:
    import torch

    return (isinstance(module, torch.nn.Linear) and module.in_features % 16 == 0
            and module.out_features % 16 == 0 and not excluded(name, exclude))


def fp8_config() -> Any:
    """torchao's float8 training settings of a run."""
    from torchao.float8 import Float8LinearConfig

    return Float8LinearConfig(pad_inner_dim=True, emulate=_emulate)


def convert_to_fp8(model: Any, device: Any, exclude: Sequence[str] = ()) -> int:
    """Swap ``model``'s eligible linear layers for torchao's float8 training layers, leaving those whose qualified
    names match ``exclude`` (the family's quantization exclusions: embedders, norms, output projections, whose
    precision matters most) in bf16; returns how many were swapped. Raises :class:`TrainingSetupError` where
    float8 training cannot run."""
    problem = fp8_problem(device)
    if problem is not None:
        raise TrainingSetupError(problem)
    from torchao.float8 import convert_to_float8_training
    from torchao.float8.float8_linear import Float8Linear

    convert_to_float8_training(model, config=fp8_config(),
                               module_filter_fn=lambda module, name: _convertible(module, name, exclude))
    return sum(1 for m in model.modules() if isinstance(m, Float8Linear))
