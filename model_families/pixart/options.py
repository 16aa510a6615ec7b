"""Options of the PixArt family (config keys ``pixart_*``); imports nothing heavy."""

from __future__ import annotations

import attrs

from simpletuner.core.options import option

VALIDATION_SCHEDULERS = ("ddim", "dpm-solver++")


@attrs.define(kw_only=True)
class PixArtOptions:
    """PixArt-Sigma-only settings."""

    pixart_max_tokens: int = option(
        300, help="T5 tokens per caption (longer captions are cut); PixArt-Sigma was trained with 300.",
        section="model", minimum=1, maximum=512,
    )
    pixart_validation_scheduler: str = option(
        "ddim", help="Sampler of validation images: ddim, or the multistep DPM-Solver++ the weights ship with.",
        section="validation", choices=VALIDATION_SCHEDULERS,
    )
