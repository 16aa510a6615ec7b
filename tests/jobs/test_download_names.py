"""Downloaded files are named after their environment, job and checkpoint step, so the files of several runs can
share one downloads folder without overwriting each other."""

from __future__ import annotations

from pathlib import Path

from simpletuner.ui.jobs.models import Job
from simpletuner.ui.resources.jobs import download_name


def test_names_carry_environment_job_and_step() -> None:
    job = Job(id=7, environment="demo-flux")
    assert download_name(job, Path("pytorch_lora_weights.safetensors")) == \
        "demo-flux-job7-pytorch_lora_weights.safetensors"
    assert download_name(job, Path("checkpoint-500/pytorch_lora_weights.safetensors")) == \
        "demo-flux-job7-step500-pytorch_lora_weights.safetensors"
    assert download_name(job, Path("transformer/diffusion_pytorch_model.safetensors")) == \
        "demo-flux-job7-diffusion_pytorch_model.safetensors"
