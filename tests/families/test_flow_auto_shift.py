"""``flow_schedule_auto_shift``: each flow-matching family that declares ``resolution_shift`` shifts a batch's sigmas
by its image size, with the range its pipeline's scheduler config gives; the others are refused by config check."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from simpletuner.core.config import Layer, build_schema
from simpletuner.core.config.checks import check_config
from simpletuner.core.config.core_options import CoreOptions
from simpletuner.core.plugins import Registry
from simpletuner.core.training.flow_matching import ResolutionShift, resolution_shift

from .helpers import image_batch, make_family, train_on_shapes

pytestmark = pytest.mark.timeout(180)

SHIFTING = ("flux", "chroma", "flux2", "qwen_image", "z_image", "sd3")


@pytest.mark.parametrize("name", SHIFTING)
def test_larger_images_train_at_higher_noise(registry: Registry, tiny_folder: Callable[[str], Path],
                                             name: str) -> None:
    folder = tiny_folder(name)
    config = json.loads((folder / "scheduler" / "scheduler_config.json").read_text())
    shift = resolution_shift(str(folder))
    assert shift == ResolutionShift(base_tokens=config["base_image_seq_len"], max_tokens=config["max_image_seq_len"],
                                    base_shift=config["base_shift"], max_shift=config["max_shift"])
    assert registry.model_family(name).resolution_shift

    family = make_family(registry, name)
    family.configure(CoreOptions(flow_schedule_shift=3.0, flow_schedule_auto_shift=True))
    components = family.load_components(str(folder), dtype=torch.float32, device="cpu", names=["vae"])
    text = {"prompt_embeds": torch.zeros(1, 4, 8), "pooled_prompt_embeds": torch.zeros(1, 8),
            "attention_mask": torch.ones(1, 4)}
    transformer = json.loads((folder / "transformer" / "config.json").read_text())
    patch = transformer.get("patch_size") or transformer.get("all_patch_size", [1])[0]
    seen: list[int] = []

    def spy(tokens: int) -> float:
        seen.append(tokens)
        return shift.shift(tokens)

    for size in (64, 256):
        latents = family.encode_latents(components, image_batch(1, size, size))
        family.shift_for_tokens = spy
        auto = family.training_inputs(latents, text, torch.Generator().manual_seed(3))
        family.shift_for_tokens = None  # flow_schedule_shift (3.0): the same draw, shifted by 3
        fixed = family.training_inputs(latents, text, torch.Generator().manual_seed(3))["sigmas"]
        # the tokens the transformer sees: its sequence, or the latent cells over its patch size
        hidden = auto["hidden_states"]
        assert seen[-1] == (hidden.shape[1] if hidden.dim() == 3 else
                            (latents.shape[-2] // patch) * (latents.shape[-1] // patch))
        drawn = fixed / (3.0 - 2.0 * fixed)  # the unshifted σ
        s = shift.shift(seen[-1])
        assert torch.allclose(auto["sigmas"].float(), (s * drawn / (1 + (s - 1) * drawn)).float(), atol=1e-5)
    assert seen[1] == 16 * seen[0]  # 4× the side: 16× the tokens, and a larger shift
    assert shift.shift(seen[1]) > shift.shift(seen[0])


def test_config_check_refuses_it_where_the_family_has_no_shift_range(registry: Registry) -> None:
    schema = build_schema(registry)
    for family, refused in (("sana", True), ("pixart", True), ("flux", False)):
        config, _ = schema.load([Layer("env:t", {"model_family": family, "flow_schedule_auto_shift": True})],
                                own_source="env:t")
        problems = [p for p in check_config(config, registry)[0] if "flow_schedule_auto_shift" in p]
        assert bool(problems) == refused, (family, problems)
    assert problems == [] and refused is False


def test_a_scheduler_config_without_a_range_is_named(sana_folder: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"gives no shift range \(base_image_seq_len, max_image_seq_len, "
                                         r"base_shift, max_shift\); set flow_schedule_shift instead"):
        resolution_shift(str(sana_folder))  # a DPM-Solver schedule
    with pytest.raises(ValueError, match="cannot read the scheduler config"):
        resolution_shift(str(tmp_path / "nowhere"))


def test_a_run_with_auto_shift_trains(workspace: Any, flux_folder: Path) -> None:
    result = train_on_shapes(workspace, "auto-shift", {
        "model_family": "flux", "pretrained_model_name_or_path": str(flux_folder), "flow_schedule_auto_shift": True,
        "max_train_steps": 2, "num_train_epochs": 0, "train_batch_size": 1, "resolution": 64,
        "resolution_type": "pixel", "mixed_precision": "no", "report_to": "none", "flux_t5_max_tokens": 16,
        "lora_rank": 2})
    assert result.output.is_file()
