"""Publishers: the Hub publisher against a loopback Hub, the local folder publisher on disk, the background queue."""

from __future__ import annotations

import json
import shlex
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hub_server import HubState, fake_hub
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from simpletuner.core.config.checks import check_config
from simpletuner.core.plugins import Registry
from simpletuner.core.publishing import Publishing
from simpletuner.core.scripts import HookScripts

LORA_BYTES = b"\x00safetensors-bytes\xff" * 50


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch) -> Iterator[HubState]:
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_TOKEN", "hf_test_token")
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    with fake_hub() as state:
        yield state


@pytest.fixture
def run_output(tmp_path: Path) -> tuple[Path, Path, list[Path]]:
    """An output folder with a LoRA file and two validation images carrying their prompts."""
    out = tmp_path / "output"
    (out / "validation").mkdir(parents=True)
    lora = out / "pytorch_lora_weights.safetensors"
    lora.write_bytes(LORA_BYTES)
    images = []
    for name, prompt in (("cat-step000010-seed1-32x32", "a red cat"), ("dog-step000010-seed1-32x32", "a dog")):
        info = PngInfo()
        info.add_text("prompt", prompt)
        path = out / "validation" / f"{name}.png"
        Image.new("RGB", (32, 32), (len(prompt) * 9, 20, 200)).save(path, pnginfo=info)
        images.append(path)
    return out, lora, images


def front_matter(card: str) -> dict[str, Any]:
    assert card.startswith("---\n")
    return yaml.safe_load(card.split("---\n")[1])


def test_hub_publication_sends_the_repo_settings_files_and_card(
        hub: HubState, run_output: tuple, load_config: Callable, registry: Registry) -> None:
    out, lora, images = run_output
    config = load_config({
        "model_family": "flux", "model_flavour": "dev", "push_to_hub": True, "hub_model_id": "me/my-lora",
        "hub_private": False, "hub_endpoint": hub.base_url, "hub_tags": "portrait", "validation_prompt": "a red cat",
        "validation_guidance": 3.5, "lora_rank": 8, "model_card_note": "Trained on my cat.",
    })
    events: list[dict] = []
    publishing = Publishing.start(config, registry, out, on_event=events.append)
    assert publishing.names == ["hf-hub"]
    publishing.final([lora], images, step=10)
    assert publishing.wait() == {"hf-hub": f"{hub.base_url}/me/my-lora"}

    assert hub.repos == {"me/my-lora": {"name": "my-lora", "organization": "me", "visibility": "public",
                                       "type": "model"}}
    assert set(hub.authorization) == {"Bearer hf_test_token"}
    (commit,) = hub.commits
    assert (commit.repo_id, commit.revision) == ("me/my-lora", "main")
    assert sorted(commit.files) == ["README.md", "images/cat-step000010-seed1-32x32.png",
                                    "images/dog-step000010-seed1-32x32.png", "pytorch_lora_weights.safetensors",
                                    "simpletuner_config.json"]
    assert commit.files["pytorch_lora_weights.safetensors"] == LORA_BYTES
    assert commit.files["images/cat-step000010-seed1-32x32.png"] == images[0].read_bytes()
    sent_config = json.loads(commit.files["simpletuner_config.json"])
    assert sent_config["lora_rank"] == 8 and sent_config["hub_model_id"] == "me/my-lora"

    card = commit.files["README.md"].decode()
    meta = front_matter(card)
    assert meta == {
        "base_model": "black-forest-labs/FLUX.1-dev",
        "library_name": "diffusers",
        "license": "other",
        "license_name": "flux-1-dev-non-commercial-license",
        "license_link": "https://huggingface.co/black-forest-labs/FLUX.1-dev/blob/main/LICENSE.md",
        "pipeline_tag": "text-to-image",
        "tags": ["text-to-image", "diffusers", "simpletuner", "flux", "lora", "template:sd-lora",
                 "not-for-all-audiences", "portrait"],
        "widget": [{"text": "a red cat", "output": {"url": "images/cat-step000010-seed1-32x32.png"}},
                   {"text": "a dog", "output": {"url": "images/dog-step000010-seed1-32x32.png"}}],
    }
    assert "Trained on my cat." in card
    assert card.endswith("""## Usage

```python
import torch
from diffusers import FluxPipeline

pipeline = FluxPipeline.from_pretrained("black-forest-labs/FLUX.1-dev", dtype=torch.bfloat16)
pipeline.load_lora_weights("me/my-lora")
pipeline.to("cuda")
image = pipeline(prompt="a red cat", num_inference_steps=20, guidance_scale=3.5, width=1024, height=1024, \
generator=torch.manual_seed(42)).images[0]
image.save("output.png")
```
""")
    assert [e["event"] for e in events] == ["published"]


@pytest.mark.timeout(120)
def test_hub_publication_sends_a_model_over_10_mb_through_lfs(
        hub: HubState, tmp_path: Path, load_config: Callable, registry: Registry,
        monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub.constants
    import torch
    from safetensors.torch import save_file

    # The stand-in serves the LFS path, which huggingface_hub takes when Xet storage is off.
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_DISABLE_XET", True)
    out = tmp_path / "output"
    out.mkdir()
    lora = out / "pytorch_lora_weights.safetensors"
    tensors = {"transformer.single_transformer_blocks.0.attn.to_q.lora_A.weight": torch.randn(8, 64),
               "transformer.single_transformer_blocks.0.attn.to_q.lora_B.weight": torch.randn(64, 8),
               "padding": torch.randn(3 * 1024 * 1024)}  # 12 MiB of float32
    save_file(tensors, str(lora))
    assert lora.stat().st_size > 10 * 1024 * 1024
    config = load_config({"model_family": "flux", "model_flavour": "dev", "push_to_hub": True,
                          "hub_model_id": "me/big-lora", "hub_endpoint": hub.base_url, "lora_rank": 8})
    publishing = Publishing.start(config, registry, out, on_event=lambda event: None)
    publishing.final([lora], [], step=10)
    assert publishing.wait() == {"hf-hub": f"{hub.base_url}/me/big-lora"}

    (commit,) = hub.commits
    assert commit.lfs_files == {"pytorch_lora_weights.safetensors"}  # the card and config stay inline
    assert commit.files["pytorch_lora_weights.safetensors"] == lora.read_bytes()
    paths = [path for method, path in hub.requests if method in ("POST", "PUT")]
    assert "/me/big-lora.git/info/lfs/objects/batch" in paths
    assert [path for path in paths if path.startswith("/lfs-storage/")] == [f"/lfs-storage/{oid}"
                                                                            for oid in hub.lfs_objects]
    lfs = "/me/big-lora.git/info/lfs/objects"
    committed_at = paths.index("/api/models/me/big-lora/commit/main")
    assert paths.index(f"{lfs}/batch") < paths.index(f"{lfs}/verify") < committed_at
    assert set(hub.auth_of(".git/info/lfs")) == {"Bearer hf_test_token"}


def test_hub_uploads_retry_transient_errors_with_backoff_but_not_refusals(hub: HubState, tmp_path: Path) -> None:
    from huggingface_hub import HfApi

    from simpletuner.publishers.hf_hub import HubOptions
    from simpletuner.publishers.hf_hub.publisher import HubPublisher

    checkpoint = tmp_path / "checkpoint-20"
    (checkpoint / "nested").mkdir(parents=True)
    (checkpoint / "pytorch_lora_weights.safetensors").write_bytes(b"weights")
    (checkpoint / "nested" / "state.json").write_text('{"global_step": 20}')
    delays: list[float] = []
    publisher = HubPublisher(HubOptions(hub_upload_retries=3, hub_retry_backoff=1.5),
                             api=HfApi(endpoint=hub.base_url), sleep=delays.append)
    hub.commit_failures = [503, 429]
    location = publisher.publish_checkpoint(checkpoint, 20, {"hub_model_id": "me/ckpts"})
    assert location == f"{hub.base_url}/me/ckpts/tree/main/checkpoints/checkpoint-20"
    assert delays == [1.5, 3.0]
    assert hub.repos["me/ckpts"]["visibility"] == "private"  # private unless configured otherwise
    (commit,) = hub.commits
    assert commit.files == {"checkpoints/checkpoint-20/nested/state.json": b'{"global_step": 20}',
                            "checkpoints/checkpoint-20/pytorch_lora_weights.safetensors": b"weights"}

    hub.commit_failures = [403]
    commits_tried = sum(1 for _, path in hub.requests if "/commit/" in path)
    with pytest.raises(RuntimeError, match="could not upload the checkpoint on the Hub"):
        publisher.publish_checkpoint(checkpoint, 20, {"hub_model_id": "me/ckpts"})
    assert delays == [1.5, 3.0]  # a refusal is not retried
    assert sum(1 for _, path in hub.requests if "/commit/" in path) == commits_tried + 1

    with pytest.raises(ValueError, match="hub_model_id is not set"):
        publisher.publish_checkpoint(checkpoint, 20, {})


def test_background_queue_reports_failures_and_runs_post_upload_script(
        hub: HubState, run_output: tuple, tmp_path: Path, load_config: Callable, registry: Registry) -> None:
    out, lora, images = run_output
    checkpoint = out / "checkpoint-5"
    checkpoint.mkdir()
    (checkpoint / "pytorch_lora_weights.safetensors").write_bytes(b"w5")
    dump = tmp_path / "dump.py"
    dump.write_text("import json, sys\nopen(sys.argv[1], 'a').write(json.dumps(sys.argv[2:]) + '\\n')")
    log = tmp_path / "uploads.jsonl"
    config = load_config({
        "model_family": "flux", "push_to_hub": True, "push_checkpoints_to_hub": True, "hub_model_id": "me/q",
        "hub_endpoint": hub.base_url, "hub_upload_retries": 0, "publish_to": "local",
        "post_upload_script": shlex.join([sys.executable, str(dump), str(log)])
        + " {remote_checkpoint_path} {global_step} {local_checkpoint_path}",
    })
    events: list[dict] = []
    scripts = HookScripts.from_config(config, on_event=events.append)
    publishing = Publishing.start(config, registry, out, on_event=events.append, on_uploaded=scripts.after_upload)
    assert publishing.names == ["local", "hf-hub"]
    hub.commit_failures = [500]  # the checkpoint's Hub upload fails (no retries configured)
    publishing.checkpoint(checkpoint, 5)
    publishing.final([lora], images, step=10)
    locations = publishing.wait()
    assert locations == {"local": str(out / "published"), "hf-hub": f"{hub.base_url}/me/q"}

    outcomes = [(e["event"], e["publisher"], e["what"], e["step"]) for e in events if "publisher" in e]
    assert outcomes == [("published", "local", "checkpoint", 5), ("publish_failed", "hf-hub", "checkpoint", 5),
                        ("published", "local", "model", 10), ("published", "hf-hub", "model", 10)]
    assert "500" in next(e["error"] for e in events if e["event"] == "publish_failed")
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    assert calls == [[str(out / "published" / "checkpoints" / "checkpoint-5"), "5", str(checkpoint)],
                     [str(out / "published"), "10", ""], [f"{hub.base_url}/me/q", "10", ""]]
    assert (out / "published" / "checkpoints" / "checkpoint-5" / "pytorch_lora_weights.safetensors").read_bytes() \
        == b"w5"


def test_local_publisher_writes_the_publication_on_disk(tmp_path: Path, load_config: Callable,
                                                        registry: Registry) -> None:
    out = tmp_path / "output"
    transformer = out / "transformer"
    transformer.mkdir(parents=True)
    (transformer / "config.json").write_text('{"_class_name": "FluxTransformer2DModel"}')
    (transformer / "diffusion_pytorch_model.safetensors").write_bytes(b"full weights")
    target = tmp_path / "shared models" / "my model"
    config = load_config({"model_family": "flux", "model_flavour": "schnell", "model_type": "full",
                          "publish_to": ["local"], "local_publish_dir": str(target),
                          "pretrained_model_name_or_path": "/models/flux-schnell"})
    publishing = Publishing.start(config, registry, out)
    publishing.final([transformer], [], step=100)
    assert publishing.wait() == {"local": str(target)}
    written = sorted(p.relative_to(target).as_posix() for p in target.rglob("*") if p.is_file())
    assert written == ["README.md", "simpletuner_config.json", "transformer/config.json",
                       "transformer/diffusion_pytorch_model.safetensors"]
    assert (target / "transformer" / "diffusion_pytorch_model.safetensors").read_bytes() == b"full weights"
    card = (target / "README.md").read_text()
    meta = front_matter(card)
    assert (meta["base_model"], meta["license"], "lora" in meta["tags"], "full-finetune" in meta["tags"]) == (
        "/models/flux-schnell", "apache-2.0", False, True)
    assert "widget" not in meta
    assert f'transformer = AutoModel.from_pretrained("{target}", subfolder="transformer", dtype=torch.bfloat16)' \
        in card  # the card loads the model from where it was published
    assert ('pipeline = FluxPipeline.from_pretrained("/models/flux-schnell", transformer=transformer, '
            'dtype=torch.bfloat16)') in card
    assert json.loads((target / "simpletuner_config.json").read_text())["model_type"] == "full"


def test_publish_settings_are_checked(load_config: Callable, registry: Registry) -> None:
    from simpletuner.core.errors import ConfigError

    problems, _ = check_config(load_config({"model_family": "flux", "publish_to": "locl,hf-hub"}), registry)
    assert "$.publish_to: unknown publisher 'locl' (did you mean 'local'?); installed: hf-hub, local" in problems
    assert "$.hub_model_id: required when publishing to hf-hub (e.g. 'your-name/my-lora')" in problems
    with pytest.raises(ConfigError, match=r"\$\.hub_endpoint: expected an http\(s\) address"):
        load_config({"hub_endpoint": "huggingface.co"})
