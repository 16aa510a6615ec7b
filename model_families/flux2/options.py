"""Options of the Flux.2 family (config keys ``flux2_*``); imports nothing heavy."""

from __future__ import annotations

import attrs

from simpletuner.core.options import option

GUIDANCE_MODES = ("constant", "random-range")


@attrs.define(kw_only=True)
class Flux2Options:
    """Flux.2-only settings. The guidance settings act only on [dev], the flavour with a guidance input."""

    flux2_max_tokens: int = option(
        512, help="Text tokens per caption after the chat template (longer captions are cut; shorter ones are padded "
        "to this length, as the pipeline does).", section="model", minimum=16, maximum=512,
    )
    flux2_guidance_mode: str = option(
        "constant", help="Guidance value fed to FLUX.2 [dev]'s guidance input while training: one constant value, "
        "or a value drawn per sample between flux2_guidance_min and flux2_guidance_max ([klein] has no such input).",
        section="model", choices=GUIDANCE_MODES,
    )
    flux2_guidance_value: float = option(
        1.0, help="The training guidance value of [dev] with flux2_guidance_mode constant (1.0 keeps the LoRA usable "
        "at any guidance at inference; diffusers' example script trains at 3.5).", section="model", minimum=0,
    )
    flux2_guidance_min: float = option(1.0, help="Lowest [dev] guidance value with flux2_guidance_mode random-range.",
                                       section="model", minimum=0)
    flux2_guidance_max: float = option(4.0, help="Highest [dev] guidance value with flux2_guidance_mode "
                                       "random-range.", section="model", minimum=0)
