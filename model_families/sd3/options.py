"""Options of the SD3 family (config keys ``sd3_*``); imports nothing heavy."""

from __future__ import annotations

import attrs

from simpletuner.core.options import option

#: How σ is drawn and how each sample's loss is weighted (the schemes of Stable Diffusion 3's training recipe).
WEIGHTING_SCHEMES = ("logit_normal", "mode", "sigma_sqrt", "cosmap", "none")


@attrs.define(kw_only=True)
class SD3Options:
    """SD3-only settings. Flavours pre-set none of them."""

    sd3_weighting_scheme: str = option(
        "logit_normal", help="How noise levels are drawn and losses weighted: logit_normal (σ drawn logit-normal, "
        "the SD3 paper's choice), mode (σ drawn with extra weight near the middle, see sd3_mode_scale), sigma_sqrt "
        "(uniform σ, loss weighted by 1/σ²), cosmap (uniform σ, cosine-map weighting) or none (uniform σ, "
        "unweighted).", section="model", choices=WEIGHTING_SCHEMES,
    )
    sd3_logit_mean: float = option(0.0, help="Mean of the logit-normal σ distribution.", section="model")
    sd3_logit_std: float = option(1.0, help="Standard deviation of the logit-normal σ distribution.",
                                  section="model", minimum=0.01)
    sd3_mode_scale: float = option(1.29, help="Scale of the mode scheme's bias towards middle noise levels.",
                                   section="model", minimum=-1.0, maximum=2.0)
    sd3_use_t5: bool = option(
        True, help="Encode captions with T5-XXL as well as the two CLIP encoders. Off: T5 is never loaded (about "
        "10 GiB less while caching) and its part of the text is zeros, as the pipeline does without text_encoder_3; "
        "the LoRA should then be used without T5 too.", section="model",
    )
    sd3_t5_max_tokens: int = option(256, help="T5 tokens per caption (longer captions are cut).", section="model",
                                    minimum=1, maximum=512)
