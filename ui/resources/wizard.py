"""The training wizard's catalog: everything its steps offer, read from the registry (families with flavours and
what each pre-enables, adapters, precisions with advice, memory presets, trackers, publishers, validation methods)
and the option defaults. The wizard saves through the config API, so the same validator checks its result."""

from __future__ import annotations

from typing import Any

import falcon

from simpletuner.core.config.core_options import OPTIMIZERS
from simpletuner.core.distributed import DEEPSPEED_PRESETS
from simpletuner.core.specs import ModelFamilySpec
from simpletuner.ui.resources.base import Resource, send_json

#: Learning-rate / batch / optimizer starting points offered by the wizard (manual entry is always possible).
TRAINING_PRESETS: tuple[dict[str, Any], ...] = (
    {"name": "gentle", "title": "Gentle (likeness without overfitting)",
     "values": {"learning_rate": 5e-5, "train_batch_size": 1, "optimizer": "adamw_bf16", "lr_scheduler": "constant"}},
    {"name": "standard", "title": "Standard LoRA",
     "values": {"learning_rate": 1e-4, "train_batch_size": 1, "optimizer": "adamw_bf16", "lr_scheduler": "constant"}},
    {"name": "fast", "title": "Fast (strong style, watch for overfitting)",
     "values": {"learning_rate": 4e-4, "train_batch_size": 2, "optimizer": "adamw_bf16",
                "lr_scheduler": "cosine"}},
)


def family_json(family: ModelFamilySpec) -> dict[str, Any]:
    """What the wizard shows of a model family."""
    return {
        "name": family.name, "title": family.title, "description": family.description,
        "default_flavour": family.default_flavour,
        "flavours": [{"name": f.name, "pretrained": f.pretrained, "description": f.description,
                      "settings": dict(f.settings)} for f in family.flavours],
        "model_types": list(family.model_types), "lora_types": list(family.lora_types),
        "precisions": list(family.precisions), "discouraged_precisions": dict(family.discouraged_precisions),
        "memory_presets": [{"name": p.name, "tradeoff": p.tradeoff, "settings": dict(p.settings)}
                           for p in family.memory_presets],
    }


class WizardCatalog(Resource):
    """``GET /api/wizard/catalog``: the choices of every wizard step."""

    permissions = {"GET": "config.view"}

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        registry = self.ctx.registry
        quantizer_levels = {level for spec in registry.quantizers().values() for level in spec.precisions}
        send_json(resp, {
            "families": [family_json(f) for f in registry.model_families().values()],
            "available_precisions": sorted(quantizer_levels | {"no_change"}),
            "deepspeed_presets": list(DEEPSPEED_PRESETS),
            "trackers": [{"name": s.name, "title": s.title, "description": s.description}
                         for s in registry.trackers().values()],
            "publishers": [{"name": s.name, "title": s.title} for s in registry.publishers().values()],
            "validation_methods": [{"name": s.name, "title": s.title} for s in registry.validation_methods().values()],
            "optimizers": list(OPTIMIZERS),
            "training_presets": list(TRAINING_PRESETS),
        })
