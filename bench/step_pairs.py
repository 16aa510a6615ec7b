"""Engine steps and bare LoRA steps measured in pairs, interleaved in one process (used by ``step_overhead.py``
and ``family_step_overhead.py``).

The engine trains through :func:`simpletuner.core.training.run.train` with an event listener. Each time a ``step``
event arrives, the listener runs the bare step of ``bare_lora_step.py`` (:data:`DEFAULT_BARE`) (its own ``forward``,
on a model of the same configuration with the same LoRA) once with the script's optimizer (``torch.optim.AdamW``
defaults) and once with the engine's AdamW implementation. The engine's step is the time from the listener's return
to its next call: data loading, noise sampling, forward, backward, clipping, the optimizer and scheduler, metrics
and the event write all fall inside it; the bare steps do not. Every engine step is thus followed by the bare steps
it is compared with, so load from other processes on a shared machine hits both sides alike; the paired ratio
(engine step k / bare step k) is the most robust figure.
"""

from __future__ import annotations

import importlib.util
import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
#: Where the bare step script is looked for, in order: this folder (a copy of the shared reference script), a
#: ``shared/`` folder in the repository root, then the shared folder beside the repository.
BARE_CANDIDATES = (REPO / "bench" / "bare_lora_step.py", REPO / "shared" / "bench" / "bare_lora_step.py",
                   REPO.parent / "shared" / "bench" / "bare_lora_step.py")
#: The first bare step script that exists (the first candidate where none does: the message names it).
DEFAULT_BARE = next((path for path in BARE_CANDIDATES if path.is_file()), BARE_CANDIDATES[0])


def bare_module(path: Path) -> Any:
    """Import the bare step script from ``path``."""
    spec = importlib.util.spec_from_file_location("bare_lora_step", path)
    assert spec and spec.loader, f"cannot load {path}"
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def cuda() -> bool:
    """Whether the bench runs on a GPU (bf16 autocast there, float32 on the CPU, as the bare script does)."""
    import torch

    return torch.cuda.is_available()


class BareStep:
    """The bare script's step on ``cls(**cfg)`` with its LoRA; :meth:`run` times one step with either optimizer."""

    def __init__(self, bare: Any, family: str, cls: Any, cfg: dict[str, Any], shapes: dict[str, Any], *, rank: int,
                 gc: bool, engine_optimizer: dict[str, Any], batch_size: int = 1) -> None:
        import torch
        from peft import LoraConfig, inject_adapter_in_model

        self.bare, self.family, self.shapes, self.batch_size = bare, family, shapes, batch_size
        self.device = "cuda" if cuda() else "cpu"
        self.dtype = torch.bfloat16 if self.device == "cuda" else torch.float32
        if self.device == "cuda":
            # the reference measurements were taken so (../shared/bench/README.md: cuDNN attention's backward
            # fails on that build); the engine turns it off only where a probe of its backward pass fails
            torch.backends.cuda.enable_cudnn_sdp(False)
        torch.manual_seed(0)
        with torch.device(self.device):
            self.model = cls(**cfg).to(self.dtype)
        self.model.requires_grad_(False)
        inject_adapter_in_model(LoraConfig(r=rank, lora_alpha=rank, init_lora_weights="gaussian",
                                           target_modules=bare.TARGETS[family]), self.model)
        lora = [p for p in self.model.parameters() if p.requires_grad]
        for p in lora:
            p.data = p.data.float()
        if gc:
            self.model.enable_gradient_checkpointing()
        # Both optimizers update the same LoRA weights: only the time of a step matters here, not where it leads.
        self.optimizers = {"script": torch.optim.AdamW(lora, lr=1e-4),
                           "engine": torch.optim.AdamW(lora, lr=1e-4, **engine_optimizer)}

    def run(self, optimizer: str) -> float:
        """Seconds of one bare step (timed as the script times it) with the ``script`` or ``engine`` optimizer."""
        import torch

        opt = self.optimizers[optimizer]
        self._sync()
        start = time.perf_counter()
        with torch.autocast(self.device, dtype=torch.bfloat16, enabled=self.device == "cuda"):
            loss = self.bare.forward(self.family, self.model, self.shapes, self.batch_size, self.device, self.dtype)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        self._sync()
        return time.perf_counter() - start

    def _sync(self) -> None:
        import torch

        if self.device == "cuda":
            torch.cuda.synchronize()


def engine_optimizer_kwargs() -> dict[str, Any]:
    """The keyword arguments the engine gives ``torch.optim.AdamW`` for the bench's LoRA (float32 on this device)."""
    import torch

    from simpletuner.core.training.optim import adamw_implementation

    device = "cuda" if cuda() else "cpu"
    return adamw_implementation([torch.zeros(1, device=device)])


def write_environment(workspace: Path, family: str, model: Path, pixels: int, config: dict[str, Any], *,
                      batch_size: int = 1) -> Path:
    """A bench environment: four batches of demo images at ``pixels``² and the bench's settings over the common
    ones."""
    from PIL import Image

    from simpletuner.core.cli.demo_commands import make_demo_images
    from simpletuner.core.workspace import Workspace

    ws = Workspace(workspace)
    data = ws.datasets_dir / "bench"
    for path in make_demo_images(data, 4 * batch_size):
        Image.open(path).convert("RGB").resize((pixels, pixels)).save(path)
    env = ws.configs_dir / "bench"
    env.mkdir(parents=True)
    (env / "config.json").write_text(json.dumps({
        "model_family": family, "pretrained_model_name_or_path": str(model), "lora_dropout": 0.0,
        "learning_rate": 1e-4, "num_train_epochs": 0, "train_batch_size": batch_size, "seed": 0, "resolution": pixels,
        "mixed_precision": "bf16" if cuda() else "no", "checkpointing_steps": 0, "report_to": "none",
        "output_dir": "output/bench", **config,
    }))
    (env / "multidatabackend.json").write_text(json.dumps([
        {"id": "bench", "instance_data_dir": str(data), "minimum_image_size": 64},
        {"id": "embeds", "dataset_type": "text_embeds", "default": True},
    ]))
    return env


def run_pairs(workspace: Path, bare: BareStep) -> dict[str, list[float]]:
    """Train the ``bench`` environment of ``workspace``, running the bare steps between engine steps."""
    os.environ["SIMPLETUNER_WORKSPACE"] = str(workspace)
    from simpletuner.core.config import load_environment
    from simpletuner.core.environments import EnvironmentStore
    from simpletuner.core.plugins import Registry
    from simpletuner.core.training.run import train
    from simpletuner.core.workspace import Workspace

    times: dict[str, list[float]] = {"engine": [], "script": [], "engine_optimizer": [], "data_wait": []}
    last_exit: list[float] = []

    def listener(event: dict[str, Any]) -> None:
        if event["event"] != "step":
            return
        entered = time.perf_counter()
        if last_exit:
            times["engine"].append(entered - last_exit[0])
            times["data_wait"].append(event["data_wait_s"])
        # alternate which optimizer goes first, so neither always follows the engine's step
        order = ("script", "engine") if len(times["script"]) % 2 == 0 else ("engine", "script")
        for name in order:
            times["script" if name == "script" else "engine_optimizer"].append(bare.run(name))
        bare._sync()
        last_exit[:] = [time.perf_counter()]

    ws = Workspace(workspace)
    registry = Registry()
    train(load_environment(ws, EnvironmentStore(ws.configs_dir), "bench", registry), ws, registry,
          listeners=[listener])
    # bare steps of the first event have no engine step before them in the interval measurement
    times["script"], times["engine_optimizer"] = times["script"][1:], times["engine_optimizer"][1:]
    return times


def summary(times: dict[str, list[float]], warmup: int) -> dict[str, Any]:
    """Medians, minima and ratios of the measured steps after ``warmup`` pairs."""
    engine, script, matched = (times[k][warmup:] for k in ("engine", "script", "engine_optimizer"))
    assert engine and len(engine) == len(script) == len(matched), "no measured steps: raise --steps"
    wait = times["data_wait"][warmup:]

    def rounded(value: float) -> float:
        return round(value, 5)

    return {
        "steps": len(engine),
        "bare_step_s_median": rounded(statistics.median(script)), "bare_step_s_min": rounded(min(script)),
        "engine_step_s_median": rounded(statistics.median(engine)), "engine_step_s_min": rounded(min(engine)),
        "ratio": round(statistics.median(engine) / statistics.median(script), 3),
        "ratio_min": round(min(engine) / min(script), 3),
        "ratio_paired_median": round(statistics.median(e / s for e, s in zip(engine, script, strict=True)), 3),
        # the same bare step with the engine's AdamW implementation: the engine's overhead apart from that choice
        "bare_engine_optimizer_step_s_median": rounded(statistics.median(matched)),
        "ratio_same_optimizer": round(statistics.median(engine) / statistics.median(matched), 3),
        "ratio_same_optimizer_min": round(min(engine) / min(matched), 3),
        "data_wait_share": round(sum(wait) / sum(engine), 5),
    }
