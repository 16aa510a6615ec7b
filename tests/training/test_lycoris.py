"""LyCORIS adapters: every algorithm builds on a Flux transformer, trains and round-trips through LyCORIS' own loader;
an engine run trains LoKr with per-module and per-name algorithms, saves the config with the weights, resumes
exactly, and the file changes FluxPipeline's images."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from training_helpers import events_of, only_run

from simpletuner.core.config.lycoris_config import BUILTIN_PRESETS
from simpletuner.core.training.checkpoints import complete_checkpoints
from simpletuner.core.training.lycoris import (
    ALGORITHMS,
    CONFIG_KEYS,
    LYCORIS_CONFIG_FILE,
    LYCORIS_METADATA_KEY,
    PRESET_KEYS,
    apply_lycoris_weights,
    build_network,
    lycoris_problems,
)
from simpletuner.core.training.outputs import TRAINING_METADATA_KEY, read_lora
from simpletuner.core.workspace import Workspace

LOKR = {
    "algo": "lokr", "multiplier": 1.0, "linear_dim": 10000, "linear_alpha": 1, "factor": 8,
    "apply_preset": {
        "target_module": ["FluxAttention", "FeedForward"],
        "target_name": ["single_transformer_blocks.0.proj_mlp"],
        "module_algo_map": {"FeedForward": {"factor": 4}},
        "name_algo_map": {"single_transformer_blocks.0.proj_mlp": {"algo": "loha", "linear_dim": 4}},
    },
}


def _tiny_transformer(seed: int = 0) -> Any:
    import torch
    from diffusers import FluxTransformer2DModel

    from simpletuner.model_families.flux.tiny import TINY_SIZES

    torch.manual_seed(seed)
    return FluxTransformer2DModel(**TINY_SIZES["transformer"]).requires_grad_(False)


def _forward(transformer: Any) -> Any:
    import torch

    generator = torch.Generator().manual_seed(1)
    tokens = torch.randn(1, 16, 64, generator=generator)
    text = torch.randn(1, 8, 32, generator=generator)
    pooled = torch.randn(1, 32, generator=generator)
    return transformer(hidden_states=tokens, encoder_hidden_states=text, pooled_projections=pooled,
                       timestep=torch.tensor([0.5]), img_ids=torch.zeros(16, 3), txt_ids=torch.zeros(8, 3),
                       guidance=torch.tensor([3.5]), return_dict=False)[0]


def test_known_names_match_the_installed_lycoris() -> None:
    from lycoris.config_sdk import VALID_PRESET_KEYS
    from lycoris.wrapper import PRESET, network_module_dict

    assert set(ALGORITHMS) == set(network_module_dict)
    assert set(BUILTIN_PRESETS) == set(PRESET)
    assert set(PRESET_KEYS) == set(VALID_PRESET_KEYS)
    assert {"algo", "linear_dim", "linear_alpha", "factor", "apply_preset"} <= set(CONFIG_KEYS)


def test_bad_configs_name_each_problem() -> None:
    problems = lycoris_problems({"algo": "lokra", "linear_dim": "big", "factor": 0, "colour": 1,
                                 "apply_preset": {"target_module": "Attention", "targets": [],
                                                  "module_algo_map": {"Attention": {"algo": "nope"}}}})
    text = "\n".join(problems)
    assert "'lokra' is not a LyCORIS algorithm" in text and "linear_dim: expected a whole number" in text
    assert "factor: must be -1" in text and "unknown key(s) colour" in text
    assert "apply_preset.target_module: expected a list" in text and "apply_preset: unknown key(s) targets" in text
    assert "module_algo_map.Attention.algo: unknown algorithm 'nope'" in text
    assert lycoris_problems(LOKR) == []


def test_a_preset_is_a_builtin_name_never_a_file_to_read(tmp_path: Path) -> None:
    """LyCORIS reads a ``preset`` that is not one of its names as a TOML file: a config could make the server read
    any file (and echo it in a parse error). Only the built-in names pass; the file is never opened."""
    secret = tmp_path / "secret.toml"
    secret.write_text("token = 'do-not-read'\n")
    problems = lycoris_problems({**LOKR, "preset": str(secret)})
    assert len(problems) == 1 and "preset files are not read" in problems[0]
    assert lycoris_problems({**LOKR, "preset": "attn-mlp"}) == []
    with pytest.raises(ValueError, match="matches no layer"):
        build_network(_tiny_transformer(), {"algo": "lokr", "apply_preset": {"target_module": ["NoSuchBlock"]}})


@pytest.mark.parametrize("algo", ["lokr", "locon", "loha", "full"])
def test_each_algorithm_trains_and_reloads(algo: str, tmp_path: Path) -> None:
    import torch
    from safetensors.torch import save_file

    from simpletuner.core.training.lycoris import attach_lycoris

    transformer = _tiny_transformer()
    base = _forward(transformer).detach()
    config = {"algo": algo, "linear_dim": 4, "linear_alpha": 2, "factor": 4,
              "apply_preset": {"target_module": ["FluxAttention"]}}
    linears = {f"{name}.{child}" for name, module in transformer.named_modules()
               if type(module).__name__ == "FluxAttention"
               for child, sub in module.named_modules() if isinstance(sub, torch.nn.Linear)}
    network = attach_lycoris(transformer, config)
    assert sorted(lora.lora_name for lora in network.loras) == sorted(
        "lycoris_" + name.replace(".", "_") for name in linears)
    torch.testing.assert_close(_forward(transformer).detach(), base)  # a fresh network is a no-op
    optimizer = torch.optim.AdamW(network.parameters(), lr=1e-2)
    for _ in range(3):
        loss = (_forward(transformer) - 1).pow(2).mean()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    trained = _forward(transformer).detach()
    assert (trained - base).abs().mean() > 1e-4
    save_file({k: v.contiguous() for k, v in network.state_dict().items()}, str(tmp_path / "w.safetensors"))

    fresh = _tiny_transformer()
    apply_lycoris_weights(fresh, str(tmp_path / "w.safetensors"))
    torch.testing.assert_close(_forward(fresh).detach(), trained, rtol=1e-4, atol=1e-5)


def _lycoris_env(make_env: Callable[..., str], workspace: Workspace, name: str, config: dict[str, Any],
                 **settings: Any) -> str:
    env = make_env(name, lora_type="lycoris", **settings)
    (workspace.configs_dir / env / LYCORIS_CONFIG_FILE).write_text(json.dumps(config))
    return env


def test_lokr_run_saves_its_config_and_changes_the_pipeline(make_env: Callable[..., str],
                                                             run_env: Callable[..., Any], workspace: Workspace,
                                                             tiny_flux: Path) -> None:
    name = _lycoris_env(make_env, workspace, "lokr", LOKR, images=1, train_batch_size=1, max_train_steps=40,
                        learning_rate=1e-2, flow_schedule_shift=10.0, max_grad_norm=1.0)
    result = run_env(name)
    losses = [e["loss"] for e in events_of(result.run_dir, "step")]
    assert sum(losses[-10:]) / 10 < 0.7 * sum(losses[:10]) / 10, losses

    weights, header = read_lora(result.output, "transformer")
    assert json.loads(header[LYCORIS_METADATA_KEY]) == LOKR
    assert json.loads((result.run_dir / LYCORIS_CONFIG_FILE).read_text()) == LOKR
    assert json.loads(header[TRAINING_METADATA_KEY])["config"]["lora_type"] == "lycoris"
    assert any(k.startswith("lycoris_transformer_blocks_0_ff_net_2.lokr_") for k in weights)
    assert any(k.startswith("lycoris_transformer_blocks_0_attn_to_q.lokr_") for k in weights)
    assert any(k.startswith("lycoris_single_transformer_blocks_0_proj_mlp.hada_") for k in weights)

    import torch
    from diffusers import FluxPipeline

    pipe = FluxPipeline.from_pretrained(str(tiny_flux))
    kwargs = dict(prompt="a red circle", height=128, width=128, num_inference_steps=2, guidance_scale=3.5,
                  max_sequence_length=16, output_type="pt")
    base = pipe(generator=torch.Generator().manual_seed(0), **kwargs).images
    network = apply_lycoris_weights(pipe.transformer, str(result.output))
    assert {type(m).__name__ for m in network.loras} == {"LokrModule", "LohaModule"}
    adapted = pipe(generator=torch.Generator().manual_seed(0), **kwargs).images
    assert (adapted - base).abs().mean() > 1e-3


class Stop(Exception):
    """Raised by a listener to stop a run as a kill would."""


def test_lycoris_resume_reaches_the_uninterrupted_weights(make_env: Callable[..., str],
                                                         run_env: Callable[..., Any], workspace: Workspace) -> None:
    config = {**LOKR, "dropout": 0.2}
    settings = dict(images=6, max_train_steps=4, checkpointing_steps=2, train_batch_size=1,
                    gradient_accumulation_steps=2, lr_scheduler="cosine", caption_dropout_probability=0.3)
    straight = run_env(_lycoris_env(make_env, workspace, "lyco-straight", config, **settings))
    name = _lycoris_env(make_env, workspace, "lyco-stopped", config, **settings)

    def stop_after_checkpoint(event: dict[str, Any]) -> None:
        if event["event"] == "checkpoint_saved":
            raise Stop

    with pytest.raises(Stop):
        run_env(name, listeners=[stop_after_checkpoint])
    [(_, checkpoint)] = complete_checkpoints(only_run(workspace.root / "output" / name))
    assert json.loads((checkpoint / LYCORIS_CONFIG_FILE).read_text()) == config
    config_path = workspace.configs_dir / name / "config.json"
    settings_file = json.loads(config_path.read_text())
    config_path.write_text(json.dumps({**settings_file, "resume_from_checkpoint": "latest"}))
    resumed = run_env(name)
    assert events_of(resumed.run_dir, "run_started")[-1]["start_step"] == 2
    expected, _ = read_lora(straight.output, "transformer")
    actual, _ = read_lora(resumed.output, "transformer")
    assert expected.keys() == actual.keys()
    for key in expected:
        assert (expected[key] - actual[key]).abs().max().item() < 1e-5, key


@pytest.mark.parametrize("family", ["sana", "pixart"])
def test_lycoris_builds_and_reloads_on_every_family(family: str, tmp_path: Path) -> None:
    import torch
    from diffusers import PixArtTransformer2DModel, SanaTransformer2DModel
    from safetensors.torch import save_file

    from simpletuner.core.training.lycoris import attach_lycoris
    from simpletuner.model_families.pixart.tiny import TINY_SIZES as PIXART
    from simpletuner.model_families.sana.tiny import TINY_SIZES as SANA

    cls, sizes = (SanaTransformer2DModel, SANA) if family == "sana" else (PixArtTransformer2DModel, PIXART)
    torch.manual_seed(0)
    transformer = cls(**sizes["transformer"]).requires_grad_(False)
    # SimpleTuner's example config: LoKr on diffusers' Attention and FeedForward blocks
    config = {"algo": "lokr", "linear_dim": 10000, "linear_alpha": 1, "factor": 4,
              "apply_preset": {"target_module": ["Attention", "FeedForward"],
                               "module_algo_map": {"FeedForward": {"factor": 2}}}}
    network = attach_lycoris(transformer, config)
    targets = {f"lycoris_{name}_{child}".replace(".", "_") for name, module in transformer.named_modules()
               if type(module).__name__ in ("Attention", "FeedForward") and not name.startswith("lycoris")
               for child, sub in module.named_modules() if isinstance(sub, torch.nn.Linear)}
    assert targets and {lora.lora_name for lora in network.loras} == targets
    for parameter in network.parameters():
        parameter.data.add_(0.01)
    save_file({k: v.contiguous() for k, v in network.state_dict().items()}, str(tmp_path / "w.safetensors"))
    fresh = cls(**sizes["transformer"]).requires_grad_(False)
    loaded = apply_lycoris_weights(fresh, str(tmp_path / "w.safetensors"))
    original = dict(network.named_parameters())
    assert dict(loaded.named_parameters()).keys() == original.keys()
    for key, value in loaded.named_parameters():
        torch.testing.assert_close(value, original[key])
    scales = {lora.lora_name: float(lora.scale) for lora in network.loras}
    assert {lora.lora_name: float(lora.scale) for lora in loaded.loras} == scales


def test_config_check_reports_lycoris_problems(make_env: Callable[..., str], workspace: Workspace) -> None:
    from simpletuner.core.config import load_environment
    from simpletuner.core.environments import EnvironmentStore
    from simpletuner.core.errors import ConfigError
    from simpletuner.core.plugins import Registry

    name = _lycoris_env(make_env, workspace, "lyco-bad", {"algo": "lokr", "factor": "big"}, images=0)
    with pytest.raises(ConfigError) as caught:
        load_environment(workspace, EnvironmentStore(workspace.configs_dir), name, Registry())
    assert "lycoris_config.json: factor: expected a whole number, got 'big'" in caught.value.problems
