"""Options of the SDXL family; imports nothing heavy.

The keys are SimpleTuner's own names (``prediction_type``, ``rescale_betas_zero_snr``, ``snr_gamma``,
``offset_noise``, ``noise_offset``, ``noise_offset_probability``, ``vae_dtype``), so existing SDXL configs train as
they did there. They act only when SDXL is trained; with another family the config check refuses or warns about them
as before.
"""

from __future__ import annotations

import attrs

from simpletuner.core.options import option

PREDICTION_TYPES = ("epsilon", "v_prediction")
VAE_DTYPES = ("default", "fp16", "fp32", "bf16")


@attrs.define(kw_only=True)
class SDXLOptions:
    """SDXL-only settings: the DDPM target, the noise schedule, loss weighting, offset noise and the VAE's dtype."""

    prediction_type: str = option(
        "epsilon", help="What the UNet predicts: epsilon (the noise; SDXL 1.0 base) or v_prediction (for "
        "v-prediction fine-tunes, usually with rescale_betas_zero_snr).", section="model", choices=PREDICTION_TYPES,
    )
    rescale_betas_zero_snr: bool = option(
        False, label="Rescale betas to zero terminal SNR",
        help="Rescale the noise schedule to zero terminal SNR (Lin et al. 2023), so the last timestep is pure "
        "noise; needs prediction_type v_prediction. Validation then samples with trailing timesteps.",
        section="model",
    )
    snr_gamma: float | None = option(
        None, label="Min-SNR gamma",
        help="Min-SNR-γ loss weighting (5 is the paper's value): each sample's loss is weighted by "
        "min(SNR, γ)/SNR (epsilon) or min(SNR, γ)/(SNR+1) (v-prediction). Unset or 0: plain MSE.",
        section="training", minimum=0,
    )
    offset_noise: bool = option(
        False, help="Add offset noise (a constant per sample and channel, scaled by noise_offset) so the model can "
        "learn very dark and very bright images.", section="training",
    )
    noise_offset: float = option(0.1, help="Strength of the offset noise with offset_noise.", section="training",
                                 minimum=0)
    noise_offset_probability: float = option(
        0.25, help="Fraction of batches that get offset noise with offset_noise.", section="training",
        minimum=0, maximum=1,
    )
    vae_dtype: str = option(
        "default", help="Precision of the VAE while caching latents and decoding validation images. default: the "
        "run's precision, except fp32 under fp16 for VAEs that overflow in fp16 (SDXL's own; "
        "madebyollin/sdxl-vae-fp16-fix does not, set it as pretrained_vae_model_name_or_path to keep fp16).",
        section="model", choices=VAE_DTYPES,
    )
