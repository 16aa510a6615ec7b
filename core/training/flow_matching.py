"""Rectified flow matching, the training recipe of the families built on it (Flux, Sana, Lumina 2, ...).

x_t = (1 − σ)·x₀ + σ·ε and the model learns the velocity target ε − x₀. σ is drawn logit-normal (or uniform, or
Beta-distributed, as the run's options say: :func:`draw_sigmas`), then shifted by ``flow_schedule_shift`` s:
σ' = s·σ / (1 + (s − 1)·σ), which trains more at high noise for s > 1. The shift's default is the one written on the
``flow_schedule_shift`` option; nothing here repeats it. With ``flow_schedule_auto_shift`` the shift follows each
batch's image size instead (:func:`batch_shift`).
"""

from __future__ import annotations

import math
from typing import Any

import attrs
import numpy as np
import torch

from simpletuner.core.config.core_options import CoreOptions


def flow_shift(core: Any) -> float:
    """The run's ``flow_schedule_shift`` (the option's default before a run's options are known)."""
    if core is None:
        return float(attrs.fields(CoreOptions).flow_schedule_shift.default)
    return float(core.flow_schedule_shift)


#: The scheduler config keys of a resolution-dependent shift (diffusers' FlowMatchEulerDiscreteScheduler).
RESOLUTION_SHIFT_KEYS = ("base_image_seq_len", "max_image_seq_len", "base_shift", "max_shift")


@attrs.frozen
class ResolutionShift:
    """A shift that grows with the image: μ is linear in the number of image tokens, from ``base_shift`` at
    ``base_tokens`` to ``max_shift`` at ``max_tokens`` (continued beyond both), and the shift is e^μ, as diffusers'
    pipelines compute it when generating with dynamic shifting.

    >>> flux = ResolutionShift(base_tokens=256, max_tokens=4096, base_shift=0.5, max_shift=1.15)
    >>> round(flux.shift(256), 4), round(flux.shift(4096), 4)
    (1.6487, 3.1582)
    """

    base_tokens: int
    max_tokens: int
    base_shift: float
    max_shift: float

    def shift(self, tokens: int) -> float:
        """The shift for ``tokens`` image tokens."""
        slope = (self.max_shift - self.base_shift) / (self.max_tokens - self.base_tokens)
        return math.exp(self.base_shift + slope * (tokens - self.base_tokens))


def resolution_shift(pretrained: str) -> ResolutionShift:
    """The resolution-dependent shift of a pipeline, from its scheduler config.

    Raises ``ValueError`` naming the keys its scheduler config lacks, or why it cannot be read."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    try:
        config = FlowMatchEulerDiscreteScheduler.load_config(pretrained, subfolder="scheduler")
    except OSError as exc:  # not downloaded, unreachable, or no scheduler folder
        raise ValueError(f"flow_schedule_auto_shift: cannot read the scheduler config of {pretrained!r} ({exc}); "
                         "set flow_schedule_shift instead, or download the pipeline") from None
    missing = [key for key in RESOLUTION_SHIFT_KEYS if not isinstance(config.get(key), int | float)]
    if missing or config["max_image_seq_len"] <= config["base_image_seq_len"]:
        raise ValueError(f"flow_schedule_auto_shift: the scheduler config of {pretrained!r} gives no shift range "
                         f"({', '.join(missing) or 'max_image_seq_len not above base_image_seq_len'}); set "
                         "flow_schedule_shift instead")
    return ResolutionShift(base_tokens=int(config["base_image_seq_len"]), max_tokens=int(config["max_image_seq_len"]),
                           base_shift=float(config["base_shift"]), max_shift=float(config["max_shift"]))


def batch_shift(family: Any, tokens: int) -> float:
    """The shift of a family's batch whose images are ``tokens`` transformer tokens each: the run's
    ``flow_schedule_shift``, or with ``flow_schedule_auto_shift`` the shift the engine gave the family for that many
    tokens (:attr:`~simpletuner.core.interfaces.model_family.ModelFamily.shift_for_tokens`, the pipeline's
    :func:`resolution_shift`)."""
    shift_for_tokens = family.shift_for_tokens
    return shift_for_tokens(tokens) if shift_for_tokens is not None else flow_shift(family.core)


def draw_sigmas(batch: int, generator: torch.Generator, core: Any = None) -> torch.Tensor:
    """σ before the shift, on the generator's device: logit-normal (``sigmoid(flow_sigmoid_scale × N(0, 1))``),
    uniform (``flow_use_uniform_schedule``) or Beta-distributed (``flow_use_beta_schedule``); logit-normal with
    scale 1 for ``core`` None. Every draw comes from ``generator``, so a resumed run draws the same."""
    device = generator.device
    if core is not None and core.flow_use_uniform_schedule:
        return torch.rand(batch, generator=generator, device=device)
    if core is not None and core.flow_use_beta_schedule:
        # torch's Beta sampler takes no generator: NumPy's, seeded from this one, keeps the draw reproducible
        seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=device).item())
        values = np.random.default_rng(seed).beta(core.flow_beta_schedule_alpha, core.flow_beta_schedule_beta, batch)
        return torch.from_numpy(values).to(device=device, dtype=torch.float32)
    scale = 1.0 if core is None else float(core.flow_sigmoid_scale)
    normal = torch.randn(batch, generator=generator, device=device)
    return torch.sigmoid(scale * normal)


def sample_sigmas(batch: int, generator: torch.Generator, device: torch.device, shift: float,
                  core: Any = None) -> torch.Tensor:
    """σ drawn by :func:`draw_sigmas` (for the run's ``core`` options), shifted; drawn on the generator's device,
    then moved to ``device``."""
    sigmas = draw_sigmas(batch, generator, core).to(device)
    return shift * sigmas / (1 + (shift - 1) * sigmas)


@attrs.frozen
class FlowSample:
    """One training sample of the flow: the noisy latents x_t, σ per sample, and the target ε − x₀."""

    noisy: torch.Tensor
    sigmas: torch.Tensor
    target: torch.Tensor


def flow_sample(latents: torch.Tensor, generator: torch.Generator, shift: float, core: Any = None) -> FlowSample:
    """Noise (drawn in float32, then cast), σ (drawn as the run's ``core`` options say: :func:`draw_sigmas`) and
    the noisy latents and target for a batch of latents."""
    device, dtype = latents.device, latents.dtype
    noise = torch.randn(latents.shape, generator=generator, device=generator.device, dtype=torch.float32)
    noise = noise.to(device=device, dtype=dtype)
    sigmas = sample_sigmas(latents.shape[0], generator, device, shift, core)
    s = sigmas.view(-1, *([1] * (latents.dim() - 1))).to(dtype)
    return FlowSample(noisy=(1 - s) * latents + s * noise, sigmas=sigmas, target=noise - latents)
