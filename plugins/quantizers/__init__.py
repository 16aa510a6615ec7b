"""Built-in quantizers: ``quanto`` (optimum-quanto) and ``torchao`` (PyTorch's torchao), both weight-only.

This module is the entry point; it imports nothing heavy.
"""

from __future__ import annotations

from simpletuner.core.hookspecs import RegisterQuantizer, hookimpl
from simpletuner.core.specs import QuantizerSpec, lazy

#: ``base_model_precision`` values → optimum-quanto weight qtype names.
QUANTO_PRECISIONS = {
    "int8-quanto": "qint8",
    "int4-quanto": "qint4",
    "int2-quanto": "qint2",
    "fp8-quanto": "qfloat8_e4m3fn",
    "fp8uz-quanto": "qfloat8_e4m3fnuz",
}

#: ``base_model_precision`` values → torchao weight-only configs (``torchao.quantization``).
TORCHAO_PRECISIONS = {
    "int8-torchao": "Int8WeightOnlyConfig",
    "fp8-torchao": "Float8WeightOnlyConfig",
}


@hookimpl
def register_quantizers(register: RegisterQuantizer) -> None:
    """Register optimum-quanto's and torchao's precisions."""
    register(
        QuantizerSpec(
            name="quanto",
            title="optimum-quanto",
            description="Weight-only quantisation of the frozen base model to int8, int4, int2 or fp8; "
            "activations stay in the compute dtype.",
            precisions=tuple(QUANTO_PRECISIONS),
            factory=lazy("simpletuner.plugins.quantizers.quanto:QuantoQuantizer"),
        )
    )
    register(
        QuantizerSpec(
            name="torchao",
            title="torchao",
            description="Weight-only quantisation of the frozen base model to int8 or float8 with PyTorch's torchao "
            "(pip install torchao); its tensors work with torch.compile and group offloading to CPU memory.",
            precisions=tuple(TORCHAO_PRECISIONS),
            factory=lazy("simpletuner.plugins.quantizers.torchao:TorchaoQuantizer"),
        )
    )
