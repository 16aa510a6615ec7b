"""Options of the Qwen-Image family (config keys ``qwen_image_*``); imports nothing heavy."""

from __future__ import annotations

import attrs

from simpletuner.core.options import option


@attrs.define(kw_only=True)
class QwenImageOptions:
    """Qwen-Image-only settings."""

    qwen_image_max_tokens: int = option(
        1024, label="Qwen-Image max tokens",
        help="Caption tokens after the prompt template (longer captions are cut); padding never reaches the "
        "transformer, so a lower limit only shortens long captions and the text cache.", section="model",
        minimum=16, maximum=1024,
    )
