"""Rectified flow matching, the training recipe of the families built on it (Flux, Sana, Lumina 2, ...).

x_t = (1 − σ)·x₀ + σ·ε and the model learns the velocity target ε − x₀. σ is drawn logit-normal, then shifted by
``flow_schedule_shift`` s: σ' = s·σ / (1 + (s − 1)·σ), which trains more at high noise for s > 1. The shift's default
is the one written on the ``flow_schedule_shift`` option; nothing here repeats it.
"""

from __future__ import annotations

from typing import Any

import attrs
import torch

from simpletuner.core.config.core_options import CoreOptions


def flow_shift(core: Any) -> float:
    """The run's ``flow_schedule_shift`` (the option's default before a run's options are known)."""
    if core is None:
        return float(attrs.fields(CoreOptions).flow_schedule_shift.default)
    return float(core.flow_schedule_shift)


def sample_sigmas(batch: int, generator: torch.Generator, device: torch.device, shift: float) -> torch.Tensor:
    """Logit-normal σ, shifted; drawn on the generator's device, then moved to ``device``."""
    sigmas = torch.sigmoid(torch.randn(batch, generator=generator, device=generator.device)).to(device)
    return shift * sigmas / (1 + (shift - 1) * sigmas)


@attrs.frozen
class FlowSample:
    """One training sample of the flow: the noisy latents x_t, σ per sample, and the target ε − x₀."""

    noisy: torch.Tensor
    sigmas: torch.Tensor
    target: torch.Tensor


def flow_sample(latents: torch.Tensor, generator: torch.Generator, shift: float) -> FlowSample:
    """Noise (drawn in float32, then cast), σ and the noisy latents and target for a batch of latents."""
    device, dtype = latents.device, latents.dtype
    noise = torch.randn(latents.shape, generator=generator, device=generator.device, dtype=torch.float32)
    noise = noise.to(device=device, dtype=dtype)
    sigmas = sample_sigmas(latents.shape[0], generator, device, shift)
    s = sigmas.view(-1, *([1] * (latents.dim() - 1))).to(dtype)
    return FlowSample(noisy=(1 - s) * latents + s * noise, sigmas=sigmas, target=noise - latents)
