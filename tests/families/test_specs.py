"""The Sana and PixArt specs as the registry, the config checker and the presets command see them."""

from __future__ import annotations

import pytest

from simpletuner.core.config.checks import check_config
from simpletuner.core.config.loading import build_schema, flavour_layer
from simpletuner.core.config.schema import Layer
from simpletuner.core.plugins import Registry

SANA_FLAVOURS = {
    "sana1.5-4.8b-1024": "Efficient-Large-Model/SANA1.5_4.8B_1024px_diffusers",
    "sana1.5-1.6b-1024": "Efficient-Large-Model/SANA1.5_1.6B_1024px_diffusers",
    "sana1.0-1.6b-1024": "Efficient-Large-Model/Sana_1600M_1024px_diffusers",
    "sana1.0-1.6b-2048": "Efficient-Large-Model/Sana_1600M_2Kpx_BF16_diffusers",
    "sana1.0-600m-1024": "Efficient-Large-Model/Sana_600M_1024px_diffusers",
    "sana1.0-600m-512": "Efficient-Large-Model/Sana_600M_512px_diffusers",
}
PIXART_FLAVOURS = {
    "600m-512": "PixArt-alpha/PixArt-Sigma-XL-2-512-MS",
    "600m-1024": "PixArt-alpha/PixArt-Sigma-XL-2-1024-MS",
    "600m-2048": "PixArt-alpha/PixArt-Sigma-XL-2-2K-MS",
    "900m-1024-v0.6": "terminusresearch/pixart-900m-1024-ft-v0.6",
    "900m-1024-v0.7-stage1": "terminusresearch/pixart-900m-1024-ft-v0.7-stage1",
    "900m-1024-v0.7-stage2": "terminusresearch/pixart-900m-1024-ft-v0.7-stage2",
}


@pytest.mark.parametrize(("name", "flavours"), [("sana", SANA_FLAVOURS), ("pixart", PIXART_FLAVOURS)])
def test_registered_through_entry_points_with_their_flavours(registry: Registry, name: str,
                                                              flavours: dict[str, str]) -> None:
    spec = registry.model_family(name)
    assert spec.provider is not None and spec.provider.distribution == "simpletuner"
    assert spec.provider.entry_point is not None and name in spec.provider.entry_point
    assert {f.name: f.pretrained for f in spec.flavours} == flavours
    assert [p.name for p in spec.memory_presets] == ["light", "balanced", "aggressive"]
    assert all(p.tradeoff and "\n" not in p.tradeoff for p in spec.memory_presets)


@pytest.mark.parametrize("name", ["sana", "pixart"])
def test_quantisation_is_supported_but_discouraged_with_a_reason(registry: Registry, name: str) -> None:
    spec = registry.model_family(name)
    quantised = [p for p in spec.precisions if p != "no_change"]
    assert quantised and set(spec.discouraged_precisions) == set(quantised)
    schema = build_schema(registry)
    config, _ = schema.load([Layer("env:t", {"model_family": name, "base_model_precision": "int8-quanto",
                                             "max_train_steps": 10})], own_source="env:t")
    problems, warnings = check_config(config, registry)
    assert problems == []
    assert any("discouraged" in w and name in w and spec.discouraged_precisions["int8-quanto"] in w
               for w in warnings)
    config, _ = schema.load([Layer("env:t", {"model_family": name, "base_model_precision": "int2-quanto",
                                             "max_train_steps": 10})], own_source="env:t")
    problems, _ = check_config(config, registry)
    assert any("int2-quanto" in p and "not supported" in p for p in problems)


@pytest.mark.parametrize("name", ["sana", "pixart"])
def test_presets_are_valid_configs(registry: Registry, name: str) -> None:
    schema = build_schema(registry)
    for preset in registry.model_family(name).memory_presets:
        config, _ = schema.load([Layer("env:t", {"model_family": name, "max_train_steps": 5, **preset.settings})],
                                own_source="env:t")
        problems, _ = check_config(config, registry)
        assert problems == [], (preset.name, problems)
        for key, value in preset.settings.items():
            assert getattr(config.core, key) == value


def test_the_2k_sana_flavour_loads_its_bf16_weight_variant(registry: Registry) -> None:
    layers = [Layer("env:t", {"model_family": "sana", "model_flavour": "sana1.0-1.6b-2048", "max_train_steps": 1})]
    config, _ = build_schema(registry).load(layers, own_source="env:t",
                                            flavour_settings=flavour_layer(registry, layers))
    spec = registry.model_family("sana")
    assert config.options_for(spec).sana_weights_variant == "bf16"
    layers = [Layer("env:t", {"model_family": "sana", "max_train_steps": 1})]
    config, _ = build_schema(registry).load(layers, own_source="env:t",
                                            flavour_settings=flavour_layer(registry, layers))
    assert config.options_for(spec).sana_weights_variant is None
