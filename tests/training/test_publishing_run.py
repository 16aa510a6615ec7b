"""Publishing from a real run: the ``local`` publisher receives each checkpoint and, at the end, the LyCORIS file
with its config, the validation image, the run's config and a model card; the events say where it went. A LoRA
asked for in kohya's layout too is saved and published beside the diffusers file."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from training_helpers import events_of

from simpletuner.core.training.lycoris import LYCORIS_CONFIG_FILE
from simpletuner.core.workspace import Workspace


def test_local_publisher_gets_checkpoints_and_the_final_model(make_env: Callable[..., str],
                                                             run_env: Callable[..., Any],
                                                             workspace: Workspace) -> None:
    lycoris = {"algo": "lokr", "linear_dim": 4, "linear_alpha": 1, "factor": 4,
               "apply_preset": {"target_module": ["FluxAttention"]}}
    name = make_env("publish", images=2, train_batch_size=1, max_train_steps=4, checkpointing_steps=2,
                    lora_type="lycoris", publish_to=["local"], push_checkpoints_to_hub=True,
                    validation_prompt="a red circle", validation_steps=0, validation_resolution="64",
                    validation_num_inference_steps=2, post_upload_script="touch {remote_checkpoint_path}.uploaded")
    (workspace.configs_dir / name / LYCORIS_CONFIG_FILE).write_text(json.dumps(lycoris))
    result = run_env(name)
    target = result.run_dir / "published"

    assert (target / "pytorch_lora_weights.safetensors").read_bytes() == result.output.read_bytes()
    assert json.loads((target / LYCORIS_CONFIG_FILE).read_text()) == lycoris
    images = list((target / "images").iterdir())
    assert len(images) == 1 and images[0].suffix == ".png"
    config = json.loads((target / "simpletuner_config.json").read_text())
    assert config["lora_type"] == "lycoris" and config["publish_to"] == ["local"]
    card = (target / "README.md").read_text()
    assert "flux" in card.lower() and f"images/{images[0].name}" in card
    assert (target / "checkpoints" / "checkpoint-2" / "training_state.json").is_file()

    published = events_of(result.run_dir, "published")
    assert sorted((e["what"], e["step"]) for e in published) == [("checkpoint", 2), ("model", 4)]
    assert events_of(result.run_dir, "finished")[-1]["published"] == {"local": str(target)}
    # the after-upload hook ran with each remote location
    assert (target.parent / "published.uploaded").is_file()
    assert (target / "checkpoints" / "checkpoint-2.uploaded").is_file()


@pytest.mark.timeout(300)
def test_a_run_saves_and_publishes_the_kohya_layout_beside_the_lora(make_env: Callable[..., str],
                                                                    run_env: Callable[..., Any]) -> None:
    from safetensors.torch import load_file

    name = make_env("kohya", images=2, train_batch_size=1, max_train_steps=2, checkpointing_steps=0,
                    publish_to=["local"], lora_save_formats=["kohya"])
    result = run_env(name)
    kohya = result.output.parent / "pytorch_lora_weights_kohya.safetensors"
    keys = set(load_file(str(kohya)))
    assert "lora_unet_double_blocks_0_img_attn_qkv.lora_down.weight" in keys
    assert "lora_unet_single_blocks_0_linear1.alpha" in keys  # the attention preset's single-block q, k, v
    assert (result.run_dir / "published" / kohya.name).read_bytes() == kohya.read_bytes()
