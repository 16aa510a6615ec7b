"""DoRA (``use_dora``, SimpleTuner's key) and ``lora_init_type``: a DoRA trains on the tiny Flux, its file carries the
magnitudes, loads into the stock FluxPipeline through ``load_lora_weights`` and changes its images; combinations it
cannot take are named by config check."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from training_helpers import flux_pipeline_with_lora

from simpletuner.core.config import Layer, build_schema
from simpletuner.core.config.checks import check_config
from simpletuner.core.plugins import Registry
from simpletuner.core.training.outputs import read_lora

pytestmark = pytest.mark.timeout(300)


def test_a_dora_trains_saves_its_magnitudes_and_loads_into_the_pipeline(make_env: Callable[..., str],
                                                                       run_env: Callable[..., Any],
                                                                       tiny_flux: Path) -> None:
    result = run_env(make_env("dora", images=2, train_batch_size=1, max_train_steps=4, learning_rate=1e-2,
                              use_dora=True, lora_init_type="gaussian"))
    weights, _ = read_lora(result.output, "transformer")
    magnitudes = [key for key in weights if "lora_magnitude_vector" in key]
    assert magnitudes and any("lora_A" in key for key in weights)

    pipe, change = flux_pipeline_with_lora(tiny_flux, result.output)
    assert change > 1e-3 and pipe.transformer.peft_config["default_0"].use_dora


def test_lora_init_type_chooses_peft_s_initialisation() -> None:
    from types import SimpleNamespace

    from diffusers.loaders.peft import PeftAdapterMixin  # the adapter methods the families' models carry
    from peft import LoraConfig

    from simpletuner.core.training.adapter import attach_lora

    class Tiny(torch.nn.Module, PeftAdapterMixin):
        def __init__(self) -> None:
            super().__init__()
            self.proj = torch.nn.Linear(16, 16)

    def made(init: str) -> Tiny:
        torch.manual_seed(0)
        model = Tiny()
        attach_lora(model, ("proj",), SimpleNamespace(lora_rank=4, lora_alpha=None, lora_dropout=0.0,
                                                      use_dora=False, lora_init_type=init))
        return model

    def reference(init: Any) -> Tiny:
        torch.manual_seed(0)
        model = Tiny()
        model.add_adapter(LoraConfig(r=4, lora_alpha=4, target_modules=["proj"], init_lora_weights=init))
        return model

    for init, peft_init in (("default", True), ("gaussian", "gaussian")):
        ours, theirs = made(init).proj.lora_A["default"].weight, reference(peft_init).proj.lora_A["default"].weight
        assert torch.equal(ours, theirs), init
    assert not torch.equal(made("default").proj.lora_A["default"].weight,
                           made("gaussian").proj.lora_A["default"].weight)
    assert made("gaussian").proj.lora_B["default"].weight.abs().sum() == 0  # training starts from the base model


@pytest.mark.parametrize(("values", "message"), [
    ({"lora_type": "lycoris"}, "$.use_dora: DoRA is a kind of standard LoRA"),
    ({"model_type": "full"}, "$.use_dora: DoRA is a kind of standard LoRA"),
    ({"base_model_precision": "int8-quanto"}, "which a quantised or float8 base layer does not give"),
    ({"lora_save_formats": ["kohya"]}, "have no place for DoRA's magnitudes"),
    ({"enable_group_offload": True, "group_offload_type": "leaf_level"}, "use group_offload_type: block_level"),
])
def test_what_dora_cannot_take_is_named(values: dict[str, Any], message: str) -> None:
    registry = Registry()
    config, _ = build_schema(registry).load(
        [Layer("env:t", {"model_family": "flux", "use_dora": True, **values})], own_source="env:t")
    assert any(problem.startswith(message) or message in problem for problem in check_config(config, registry)[0])


def test_simpletuners_other_initialisations_are_named() -> None:
    from simpletuner.core.errors import ConfigError

    with pytest.raises(ConfigError, match="lora_init_type"):
        build_schema(Registry()).load([Layer("env:t", {"lora_init_type": "pissa"})], own_source="env:t")
