"""Options of the Flux.2 family (config keys ``flux2_*``); imports nothing heavy."""

from __future__ import annotations

import attrs

from simpletuner.core.options import option


@attrs.define(kw_only=True)
class Flux2Options:
    """Flux.2-only settings."""

    flux2_max_tokens: int = option(
        512, help="Text tokens per caption after the chat template (longer captions are cut; shorter ones are padded "
        "to this length, as the pipeline does).", section="model", minimum=16, maximum=512,
    )
