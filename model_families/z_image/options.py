"""Options of the Z-Image family (config keys ``z_image_*``); imports nothing heavy."""

from __future__ import annotations

import attrs

from simpletuner.core.options import option


@attrs.define(kw_only=True)
class ZImageOptions:
    """Z-Image-only settings."""

    z_image_max_tokens: int = option(
        512, label="Z-Image max tokens",
        help="Text tokens per caption after the chat template (longer captions are cut); padding is dropped "
        "before the transformer sees the text, so a lower limit only shortens long captions.", section="model",
        minimum=16, maximum=1024,
    )
