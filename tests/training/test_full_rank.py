"""Full-rank training: a tiny Flux run saves a diffusers folder and resumes exactly; two gloo processes launched by
``simpletuner train`` from the environment's own num_processes train one model, checkpoint every rank's state and
save the gathered weights."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from training_helpers import events_of, only_run

from simpletuner.core.training.checkpoints import OPTIMIZER_FILE, STATE_FILE, complete_checkpoints, rng_file
from simpletuner.core.workspace import Workspace


class Stop(Exception):
    """Raised by a listener to stop a run as a kill would."""


def _max_difference(a: Any, b: Any) -> float:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    return max((sa[k].float() - sb[k].float()).abs().max().item() for k in sa)


def test_full_rank_run_saves_a_diffusers_folder_and_resumes(make_env: Callable[..., str],
                                                            run_env: Callable[..., Any], workspace: Workspace,
                                                            tiny_flux: Path) -> None:
    from diffusers import FluxTransformer2DModel

    settings = dict(images=2, train_batch_size=1, model_type="full", max_train_steps=4, checkpointing_steps=2,
                    learning_rate=1e-4, use_ema=True, ema_decay=0.5)
    straight = run_env(make_env("full-straight", **settings))
    assert straight.output == straight.run_dir / "transformer"
    base = FluxTransformer2DModel.from_pretrained(str(tiny_flux), subfolder="transformer")
    trained = FluxTransformer2DModel.from_pretrained(str(straight.output))
    assert _max_difference(base, trained) > 1e-4
    assert (straight.run_dir / "checkpoint-2" / "model.safetensors").is_file()

    name = make_env("full-stopped", **settings)

    def stop(event: dict[str, Any]) -> None:
        if event["event"] == "checkpoint_saved":
            raise Stop

    with pytest.raises(Stop):
        run_env(name, listeners=[stop])
    config_path = workspace.configs_dir / name / "config.json"
    config_path.write_text(json.dumps({**json.loads(config_path.read_text()), "resume_from_checkpoint": "latest"}))
    resumed = run_env(name)
    assert events_of(resumed.run_dir, "run_started")[-1]["start_step"] == 2
    assert _max_difference(trained, FluxTransformer2DModel.from_pretrained(str(resumed.output))) < 1e-6


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_two_gloo_processes_train_full_rank_from_the_environment(make_env: Callable[..., str],
                                                                 run_cli: Callable[..., Any],
                                                                 workspace: Workspace, tiny_flux: Path) -> None:
    from diffusers import FluxTransformer2DModel

    # 6 images in 3 buckets of 2 against an effective batch of 1 × 2 × 2 = 4: every bucket is oversubscribed
    name = make_env("full-ddp", images=6, train_batch_size=1, gradient_accumulation_steps=2, model_type="full",
                    max_train_steps=3, checkpointing_steps=2, learning_rate=1e-4, num_processes=2,
                    main_process_port=_free_port(), allow_dataset_oversubscription=True)
    result = run_cli("train", "--env", name, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    output = only_run(workspace.root / "output" / name)
    started = events_of(output, "run_started")[0]
    assert started["num_processes"] == 2 and started["model_type"] == "full"
    warnings = [e["message"] for e in events_of(output, "warning")]
    assert len(warnings) == 3 and all("repeated 2× per epoch to fill the effective batch of 4 "
                                      "(train_batch_size 1 × 2 process(es)" in w for w in warnings)
    assert [e["step"] for e in events_of(output, "step")] == [1, 2, 3]
    [(_, checkpoint)] = complete_checkpoints(output)
    assert {p.name for p in checkpoint.iterdir()} >= {"model.safetensors", rng_file(0), rng_file(1), OPTIMIZER_FILE,
                                                       STATE_FILE}
    trained = FluxTransformer2DModel.from_pretrained(str(output / "transformer"))
    base = FluxTransformer2DModel.from_pretrained(str(tiny_flux), subfolder="transformer")
    assert _max_difference(base, trained) > 1e-5
