"""Regularisation data (SimpleTuner's ``is_regularisation_data``): its batches train toward the base model's own
prediction, the adapter (a PEFT LoRA or a LyCORIS network) turned off for that one call; it needs an adapter and
another dataset to learn from."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch

from simpletuner.core.cli.demo_commands import make_demo_images
from simpletuner.core.config import load_environment
from simpletuner.core.config.core_options import CoreOptions
from simpletuner.core.environments import EnvironmentStore
from simpletuner.core.errors import ConfigError
from simpletuner.core.plugins import Registry
from simpletuner.core.training.adapter import adapter_off, attach_adapter
from simpletuner.core.training.loader import SAMPLE_LOG_ENV
from simpletuner.core.workspace import Workspace

pytestmark = pytest.mark.timeout(300)


def _transformer_with_adapter(tiny_flux: Path, lora_type: str) -> tuple[Any, Any]:
    registry = Registry()
    spec = registry.model_family("flux")
    family = spec.build(spec.flavour(None), None)
    model = family.load_components(str(tiny_flux), dtype=torch.float32, device="cpu",
                                   names=["transformer"])["transformer"]
    core = CoreOptions(model_type="lora", lora_type=lora_type, lora_rank=4, lora_alpha=4, lora_dropout=0.0)
    attach_adapter(model, family, core, {"algo": "lokr", "linear_dim": 4, "linear_alpha": 4, "factor": 4})
    torch.manual_seed(0)
    for name, parameter in model.named_parameters():
        if "lora" in name or "lycoris" in name:  # an adapter that has learned something: not the base
            parameter.data.normal_(0, 0.5)
    return family, model


@pytest.mark.parametrize("lora_type", ["standard", "lycoris"])
def test_the_adapter_is_off_only_inside_the_block(tiny_flux: Path, lora_type: str) -> None:
    family, model = _transformer_with_adapter(tiny_flux, lora_type)
    generator = torch.Generator().manual_seed(1)
    latents = torch.randn(1, 16, 8, 8, generator=generator)
    text = {"prompt_embeds": torch.randn(1, 16, 32, generator=generator), "pooled_prompt_embeds": torch.randn(1, 32),
            "attention_mask": torch.ones(1, 16)}
    family.configure(CoreOptions())
    inputs = family.training_inputs(latents, text, torch.Generator().manual_seed(2))
    trained = {"transformer": model}
    with torch.no_grad():
        adapted = family.predict(trained, inputs, text)
        with adapter_off(model):
            base = family.predict(trained, inputs, text)
        again = family.predict(trained, inputs, text)
    assert not torch.allclose(adapted, base)
    assert torch.equal(adapted, again)  # restored

    from simpletuner.core.training.loop import _base_model_target

    accelerator = SimpleNamespace(unwrap_model=lambda m: m)
    regularised = _base_model_target(accelerator, model, family, trained, inputs, text)
    assert torch.equal(regularised["target"], base) and not regularised["target"].requires_grad
    assert regularised["hidden_states"] is inputs["hidden_states"]


def _two_datasets(workspace: Workspace, name: str, config: dict[str, Any], regularising: tuple[bool, bool]) -> str:
    entries: list[dict[str, Any]] = []
    for number, regularisation in enumerate(regularising):
        folder = workspace.datasets_dir / f"{name}-{number}"
        make_demo_images(folder, 2)
        entries.append({"id": f"set-{number}", "instance_data_dir": str(folder), "caption_strategy": "textfile",
                        "cache_dir_vae": f"cache/{name}/vae-{number}", "is_regularization_data": regularisation})
    entries.append({"id": "embeds", "dataset_type": "text_embeds", "default": True, "cache_dir": f"cache/{name}/text"})
    env = workspace.configs_dir / name
    env.mkdir(parents=True)
    (env / "config.json").write_text(json.dumps({"output_dir": f"output/{name}", **config}))
    (env / "multidatabackend.json").write_text(json.dumps(entries))
    return name


def test_a_run_targets_the_base_model_on_regularisation_batches_only(
        workspace: Workspace, tiny_flux: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from conftest import base_config

    import simpletuner.core.training.loop as loop
    from simpletuner.core.training.run import train

    name = _two_datasets(workspace, "prior", base_config(tiny_flux, train_batch_size=1, max_train_steps=8),
                         (False, True))
    calls: list[int] = []
    original = loop._base_model_target

    def counted(*args: Any) -> Any:
        calls.append(1)
        return original(*args)

    monkeypatch.setattr(loop, "_base_model_target", counted)
    log = tmp_path / "samples"
    monkeypatch.setenv(SAMPLE_LOG_ENV, str(log))
    registry = Registry()
    result = train(load_environment(workspace, EnvironmentStore(workspace.configs_dir), name, registry), workspace,
                   registry)
    assert result.output.is_file()
    trained = Path(f"{log}.0").read_text().splitlines()[:8]  # the reader may run ahead of the last step
    assert len(calls) == sum(row.split("\t")[2] == "set-1" for row in trained) > 0


@pytest.mark.parametrize(("config", "regularising", "message"), [
    ({"model_type": "full"}, (False, True), "full-rank training has no adapter; train a LoRA or LyCORIS"),
    ({}, (True, True), "every image dataset is regularisation data, so nothing new would be learned"),
])
def test_what_regularisation_needs_is_checked(workspace: Workspace, tiny_flux: Path, config: dict[str, Any],
                                              regularising: tuple[bool, bool], message: str) -> None:
    from conftest import base_config

    name = _two_datasets(workspace, "refused", base_config(tiny_flux, **config), regularising)
    with pytest.raises(ConfigError) as caught:
        load_environment(workspace, EnvironmentStore(workspace.configs_dir), name, Registry())
    assert any(message in problem for problem in caught.value.problems), caught.value.problems


def test_simpletuners_spellings_both_load(workspace: Workspace, tiny_flux: Path) -> None:
    from conftest import base_config

    name = _two_datasets(workspace, "spelt", base_config(tiny_flux), (False, True))
    loaded = load_environment(workspace, EnvironmentStore(workspace.configs_dir), name, Registry())
    assert [d.is_regularisation_data for d in loaded.datasets if d.dataset_type == "image"] == [False, True]
