"""The DDPM training recipe shared by families trained on a discrete noise schedule (PixArt, SDXL), as diffusers'
training scripts do it: Gaussian noise (optionally offset), uniform integer timesteps, ``add_noise``, the epsilon or
v-prediction target, and Min-SNR-γ loss weights.

>>> import torch
>>> from diffusers import DDPMScheduler
>>> scheduler = DDPMScheduler(num_train_timesteps=1000)
>>> sample = ddpm_sample(torch.zeros(2, 4, 8, 8), scheduler, torch.Generator().manual_seed(0))
>>> sample.noisy.shape, sample.timesteps.shape
(torch.Size([2, 4, 8, 8]), torch.Size([2]))
>>> torch.equal(ddpm_target(scheduler, torch.zeros(2, 4, 8, 8), sample.noise, sample.timesteps), sample.noise)
True
"""

from __future__ import annotations

from typing import Any

import attrs

#: The prediction types a DDPM-trained model can be trained for here.
PREDICTION_TYPES = ("epsilon", "v_prediction")


@attrs.frozen
class DdpmSample:
    """One batch's draw: the noisy latents, the noise added (the epsilon target) and each sample's timestep."""

    noisy: Any
    noise: Any
    timesteps: Any


def ddpm_sample(latents: Any, scheduler: Any, generator: Any, *, noise_offset: float = 0.0,
                offset_probability: float = 1.0) -> DdpmSample:
    """Noise ε ~ N(0, 1) and timesteps t uniform over the schedule's training steps, drawn from ``generator`` (in
    that order), and x_t = √ᾱ_t·x₀ + √(1−ᾱ_t)·ε.

    With ``noise_offset`` > 0 the batch's noise gets a per-sample, per-channel constant ``noise_offset · N(0, 1)``
    added (offset noise, which lets a model learn very dark or bright images), in a fraction ``offset_probability``
    of the batches (a third draw decides when it is below 1)."""
    import torch

    device = latents.device
    noise = torch.randn(latents.shape, generator=generator, device=generator.device, dtype=torch.float32)
    noise = noise.to(device=device, dtype=latents.dtype)
    steps = scheduler.config.num_train_timesteps
    timesteps = torch.randint(0, steps, (latents.shape[0],), generator=generator, device=generator.device)
    timesteps = timesteps.to(device)
    if noise_offset > 0:
        offset = True
        if offset_probability < 1:
            offset = bool(torch.rand(1, generator=generator, device=generator.device).item() < offset_probability)
        if offset:
            shift = torch.randn((*latents.shape[:2], *([1] * (latents.dim() - 2))), generator=generator,
                                device=generator.device, dtype=torch.float32)
            noise = noise + noise_offset * shift.to(device=device, dtype=latents.dtype)
    return DdpmSample(noisy=scheduler.add_noise(latents, noise, timesteps), noise=noise, timesteps=timesteps)


def ddpm_target(scheduler: Any, latents: Any, noise: Any, timesteps: Any) -> Any:
    """The training target of the scheduler's ``prediction_type``: ε, or v = √ᾱ_t·ε − √(1−ᾱ_t)·x₀."""
    kind = scheduler.config.prediction_type
    if kind == "epsilon":
        return noise
    if kind == "v_prediction":
        return scheduler.get_velocity(latents, noise, timesteps)
    raise ValueError(f"prediction_type {kind!r} is not trained here; use one of {', '.join(PREDICTION_TYPES)}")


def snr(alphas_cumprod: Any, timesteps: Any) -> Any:
    """The signal-to-noise ratio ᾱ_t / (1 − ᾱ_t) of each timestep, in float32 (``alphas_cumprod`` on the
    timesteps' device)."""
    alpha_bar = alphas_cumprod[timesteps].float()
    return alpha_bar / (1 - alpha_bar)


def min_snr_weights(alphas_cumprod: Any, timesteps: Any, gamma: float, prediction_type: str) -> Any:
    """Min-SNR-γ loss weights per sample (Hang et al. 2023), as diffusers' training scripts compute them:
    min(SNR, γ) / SNR for an epsilon target, min(SNR, γ) / (SNR + 1) for a v-prediction target."""
    ratio = snr(alphas_cumprod, timesteps)
    clipped = ratio.clamp(max=gamma)
    return clipped / ratio if prediction_type == "epsilon" else clipped / (ratio + 1)


def weighted_mse(prediction: Any, target: Any, weights: Any | None = None) -> Any:
    """Mean squared error in float32; with ``weights`` each sample's mean error is weighted before the batch
    mean."""
    import torch.nn.functional as functional

    if weights is None:
        return functional.mse_loss(prediction.float(), target.float())
    error = functional.mse_loss(prediction.float(), target.float(), reduction="none")
    return (error.mean(dim=tuple(range(1, error.dim()))) * weights).mean()
