"""Options of the Chroma family (config keys ``chroma_*``); imports nothing heavy."""

from __future__ import annotations

import attrs

from simpletuner.core.options import option


@attrs.define(kw_only=True)
class ChromaOptions:
    """Chroma-only settings."""

    chroma_t5_max_tokens: int = option(
        512, help="T5 tokens per caption (longer captions are cut). Padding past the first pad token is masked out "
        "of attention, so shorter limits only save memory.", section="model", minimum=1, maximum=512,
    )
