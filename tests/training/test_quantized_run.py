"""An int8-quanto run on the tiny Flux: the base model's linear layers become quanto modules except the family's
exclusions, the LoRA trains on top and the loss falls; text encoders are quantised while caching."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from training_helpers import events_of

from simpletuner.core.training import caching_stage, stages


def test_int8_quanto_run_quantises_all_but_the_exclusions(make_env: Callable[..., str],
                                                          run_env: Callable[..., Any],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    import torch
    from optimum.quanto import QLinear

    seen: dict[str, Any] = {}
    attach = stages.attach_adapter
    quantize_encoders = caching_stage._quantize_encoders

    def spy_attach(model: Any, *args: Any, **kwargs: Any) -> None:
        seen["transformer"] = model
        seen["before"] = {n: type(m) for n, m in model.named_modules()}  # as quantised, before the LoRA
        attach(model, *args, **kwargs)

    def spy_encoders(encoders: dict[str, Any], *args: Any) -> None:
        quantize_encoders(encoders, *args)
        seen["encoders"] = encoders

    monkeypatch.setattr(stages, "attach_adapter", spy_attach)
    monkeypatch.setattr(caching_stage, "_quantize_encoders", spy_encoders)
    name = make_env("int8", images=1, train_batch_size=1, max_train_steps=60, learning_rate=1e-2,
                    flow_schedule_shift=10.0, lora_rank=16, lora_alpha=32, lora_target_preset="attention+mlp",
                    max_grad_norm=1.0, base_model_precision="int8-quanto", text_encoder_1_precision="int8-quanto",
                    text_encoder_2_precision="int8-quanto")
    result = run_env(name)
    losses = [e["loss"] for e in events_of(result.run_dir, "step")]
    assert sum(losses[-15:]) / 15 < 0.75 * sum(losses[:15]) / 15, losses

    linear = {n: t for n, t in seen["before"].items() if issubclass(t, torch.nn.Linear)}
    excluded_roots = ("x_embedder", "context_embedder", "proj_out", "time_text_embed")
    for module_name, kind in linear.items():
        excluded = any(module_name == root or module_name.startswith(root + ".") for root in excluded_roots)
        assert (kind is torch.nn.Linear) if excluded else (kind is QLinear), (module_name, kind)
    assert linear["x_embedder"] is torch.nn.Linear and linear["transformer_blocks.0.attn.to_q"] is QLinear
    # the LoRA wraps the frozen quanto layers and trains in full precision beside them
    to_q = seen["transformer"].transformer_blocks[0].attn.to_q
    assert isinstance(to_q.base_layer, QLinear) and not to_q.base_layer.weight.requires_grad
    assert to_q.lora_A["default"].weight.dtype == torch.float32

    for encoder in ("text_encoder", "text_encoder_2"):
        layers = [m for m in seen["encoders"][encoder].modules() if isinstance(m, torch.nn.Linear)]
        assert layers and all(isinstance(m, QLinear) for m in layers), encoder
