"""Options of the Sana family (config keys ``sana_*``); imports nothing heavy."""

from __future__ import annotations

import attrs

from simpletuner.core.options import option


@attrs.define(kw_only=True)
class SanaOptions:
    """Sana-only settings. Flavours pre-set some of them (the 2K weights are published as a ``bf16`` variant)."""

    sana_max_tokens: int = option(
        300, help="Gemma tokens per caption kept for the transformer (longer captions are cut); Sana was trained "
        "with 300.", section="model", minimum=1, maximum=300,
    )
    sana_use_complex_human_instruction: bool = option(
        True, help="Prefix every caption with the complex human instruction diffusers' SanaPipeline uses at "
        "inference, so training and inference embeddings match. Turn off only for a model trained without it.",
        section="model",
    )
    sana_weights_variant: str | None = option(
        None, help="Load the weight files of this variant (e.g. bf16 for repositories that only publish "
        "'*.bf16.safetensors'); the plain files if unset.", section="model",
    )
