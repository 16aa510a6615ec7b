"""Options of the Flux family (config keys ``flux_*``); imports nothing heavy."""

from __future__ import annotations

import attrs

from simpletuner.core.options import option

GUIDANCE_MODES = ("constant", "random-range")


@attrs.define(kw_only=True)
class FluxOptions:
    """Flux-only settings. Flavours pre-set some of them (schnell: 256 T5 tokens)."""

    flux_guidance_mode: str = option(
        "constant", help="Guidance value fed to guidance-distilled flavours while training: one constant value, or "
        "a value drawn per sample between flux_guidance_min and flux_guidance_max.", section="model",
        choices=GUIDANCE_MODES,
    )
    flux_guidance_value: float = option(
        1.0, help="The training guidance value with flux_guidance_mode constant (1.0 keeps the LoRA usable at any "
        "guidance at inference).", section="model", minimum=0,
    )
    flux_guidance_min: float = option(1.0, help="Lowest guidance value with flux_guidance_mode random-range.",
                                      section="model", minimum=0)
    flux_guidance_max: float = option(4.0, help="Highest guidance value with flux_guidance_mode random-range.",
                                      section="model", minimum=0)
    flux_attention_masked_training: bool = option(
        False, help="Mask padded T5 tokens out of attention while training (needs the masks in the text cache).",
        section="model",
    )
    flux_t5_max_tokens: int = option(
        512, help="T5 tokens per caption (longer captions are cut); 512 for dev and krea, 256 for schnell.",
        section="model", minimum=1, maximum=512,
    )
