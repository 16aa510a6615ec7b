"""optimum-quanto through the quantizer plugin: the right layers are quantised and a LoRA still trains."""

from __future__ import annotations

import pytest
import torch
from optimum.quanto import QLinear
from peft import LoraConfig, inject_adapter_in_model

from simpletuner.core.plugins import Registry


class Block(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.norm = torch.nn.LayerNorm(32)
        self.to_q = torch.nn.Linear(32, 32)
        self.to_k = torch.nn.Linear(32, 32)
        self.mlp = torch.nn.Sequential(torch.nn.Linear(32, 64), torch.nn.GELU(), torch.nn.Linear(64, 32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm(x)
        return x + self.mlp(self.to_q(h) * torch.sigmoid(self.to_k(h)))


class Model(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.x_embedder = torch.nn.Linear(8, 32)
        self.blocks = torch.nn.ModuleList([Block(), Block()])
        self.proj_out = torch.nn.Linear(32, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.x_embedder(x)
        for block in self.blocks:
            h = block(h)
        return self.proj_out(h)


@pytest.fixture(scope="module")
def quantizer():  # type: ignore[no-untyped-def]
    registry = Registry()
    spec = registry.quantizer_for("int8-quanto")
    assert spec is not None and spec.name == "quanto"
    return spec.build(None)


def test_register_quantizers_from_the_installed_plugin() -> None:
    precisions = Registry().quantizers()["quanto"].precisions
    assert {"int8-quanto", "int4-quanto", "int2-quanto", "fp8-quanto"} <= set(precisions)


@pytest.mark.parametrize("precision", ["int8-quanto", "int4-quanto", "fp8-quanto"])
def test_linear_layers_are_quantised_except_the_excluded(quantizer, precision: str) -> None:  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    model = Model()
    x = torch.randn(4, 8)
    reference = model(x)
    quantizer.quantize(model, precision, exclude=("x_embedder", "proj_out", "*norm*"))
    quantized = {name for name, m in model.named_modules() if isinstance(m, QLinear)}
    assert quantized == {f"blocks.{i}.{n}" for i in (0, 1) for n in ("to_q", "to_k", "mlp.0", "mlp.2")}
    assert type(model.x_embedder) is torch.nn.Linear and type(model.proj_out) is torch.nn.Linear
    assert not any(p.requires_grad for p in model.parameters())
    with torch.no_grad():
        error = (model(x) - reference).abs().mean() / reference.abs().mean()
    assert 0 < error < 0.3  # changed by quantisation, still the same function


def test_unknown_precision_is_refused(quantizer) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match="quanto does not provide 'int3-quanto'"):
        quantizer.quantize(Model(), "int3-quanto")


def test_a_lora_trains_on_top_of_an_int8_model(quantizer) -> None:  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    model = quantizer.quantize(Model(), "int8-quanto", exclude=("x_embedder", "proj_out", "*norm*"))
    model = inject_adapter_in_model(LoraConfig(r=4, lora_alpha=4, target_modules=["to_q", "to_k"]), model)
    trainable = [p for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n, p in model.named_parameters() if p.requires_grad)
    optimizer = torch.optim.AdamW(trainable, lr=1e-2)
    x, target = torch.randn(16, 8), torch.randn(16, 8)
    losses = []
    for _ in range(40):
        loss = torch.nn.functional.mse_loss(model(x), target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0]
