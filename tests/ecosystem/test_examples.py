"""The example scripts of examples/external-validation/, run the way SimpleTuner runs them."""

from __future__ import annotations

import json
import shlex
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from tiny_models import build_tiny

from simpletuner.core.scripts import ScriptRunner

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "external-validation"


@pytest.fixture
def webhook() -> Iterator[tuple[str, list[Any]]]:
    received: list[Any] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_POST(self) -> None:  # noqa: N802
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", received
    server.shutdown()
    server.server_close()


def test_webhook_example_posts_the_upload(webhook: tuple[str, list[Any]]) -> None:
    url, received = webhook
    template = (shlex.join([sys.executable, str(EXAMPLES / "post_webhook.py"), url])
                + " --remote {remote_checkpoint_path} --step {global_step} --run {tracker_run_name}")
    events: list[dict] = []
    runner = ScriptRunner(on_event=events.append)
    result = runner.run("post_upload", template, {"remote_checkpoint_path": "https://hub/me/x/tree/main/ckpt-5",
                                                  "global_step": 5, "tracker_run_name": "my run; echo hi"})
    assert result.ok, result
    assert received == [{"run": "my run; echo hi", "step": 5, "remote": "https://hub/me/x/tree/main/ckpt-5",
                         "local": "", "text": "my run; echo hi: step 5 uploaded to https://hub/me/x/tree/main/ckpt-5"}]

    closed = url.rsplit(":", 1)[0] + ":9/hook"  # the discard port: nothing listens there
    failed = runner.run("post_upload", shlex.join([sys.executable, str(EXAMPLES / "post_webhook.py"), closed]), {})
    assert failed.returncode == 1 and "webhook failed" in failed.output_tail
    assert events[-1]["event"] == "script_failed"


def test_inference_example_renders_a_checkpoint(tmp_path: Path) -> None:
    import torch
    from diffusers import FluxPipeline
    from peft import LoraConfig, get_peft_model_state_dict
    from safetensors.torch import load_file, save_file

    base = build_tiny("flux", tmp_path / "base model")
    pipeline = FluxPipeline.from_pretrained(str(base))
    pipeline.transformer.add_adapter(LoraConfig(r=2, lora_alpha=2, target_modules=["to_q", "to_k"]))
    checkpoint = tmp_path / "out dir" / "checkpoint-7"
    FluxPipeline.save_lora_weights(checkpoint, transformer_lora_layers=get_peft_model_state_dict(
        pipeline.transformer))
    lora = checkpoint / "pytorch_lora_weights.safetensors"
    save_file(load_file(str(lora)), str(lora), metadata={"format": "pt", "simpletuner_training": json.dumps(
        {"base_model": str(base)})})
    del pipeline
    torch.set_num_threads(1)

    template = (shlex.join([sys.executable, str(EXAMPLES / "infer_checkpoint.py")])
                + " {local_checkpoint_path} --step {global_step} --prompt {validation_prompt} --seed {validation_seed}"
                + " --size 32 --steps 1 --device cpu")
    result = ScriptRunner().run("validation", template, {"local_checkpoint_path": str(checkpoint), "global_step": 7,
                                                         "validation_prompt": "a red cat", "validation_seed": 3},
                                timeout=300)
    assert result.ok, result.output_tail
    image_path = checkpoint / "external-validation" / "step-000007-seed-3.png"
    with Image.open(image_path) as image:
        assert image.size == (32, 32)

    missing = ScriptRunner().run("validation", template, {"local_checkpoint_path": str(tmp_path),
                                                          "global_step": 1, "validation_prompt": "x",
                                                          "validation_seed": 1})
    assert missing.returncode == 2 and "no LoRA at" in missing.output_tail
