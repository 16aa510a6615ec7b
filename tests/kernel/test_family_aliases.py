"""Model family aliases: a family answers to the names SimpleTuner gives it wherever a config names a family, and
no name is claimed twice; SimpleTuner's flavour names of the built-in families resolve to the same flavours."""

from __future__ import annotations

import attrs
import pytest

from simpletuner.core.config import Layer, build_schema
from simpletuner.core.config.checks import check_config
from simpletuner.core.config.loading import flavour_layer
from simpletuner.core.errors import PluginConflictError
from simpletuner.core.hookspecs import hookimpl
from simpletuner.core.plugins import Registry
from simpletuner.core.specs import Provider

from .toy_plugins import EverythingPlugin, toy_family_spec

pytestmark = pytest.mark.timeout(60)


class AliasedToy:
    def __init__(self, name: str = "toy", aliases: tuple[str, ...] = ("toy_sigma",)) -> None:
        self.spec = attrs.evolve(toy_family_spec(name), aliases=aliases)

    @hookimpl
    def register_model_families(self, register):  # type: ignore[no-untyped-def]
        register(self.spec)


def test_a_family_is_found_by_its_aliases(registry_with) -> None:  # type: ignore[no-untyped-def]
    registry = registry_with(AliasedToy(), name="toy-plugin")
    assert registry.model_family("toy_sigma").name == "toy"
    assert registry.model_family("TOY-SIGMA").name == "toy"
    assert registry.find_model_family("toy_sigma") is registry.find_model_family("toy")
    assert registry.find_model_family("toy_alpha") is None
    assert list(registry.model_families()) == ["toy"]  # an alias is no second family


def test_a_config_naming_a_family_by_its_alias_loads_and_checks(registry_with) -> None:  # type: ignore[no-untyped-def]
    registry = registry_with(AliasedToy(), name="toy-plugin")
    registry.register_plugin(EverythingPlugin(), "everything")
    layers = [Layer("env:test", {"model_family": "toy_sigma", "model_flavour": "small"})]
    config, _ = build_schema(registry).load(layers, own_source="env:test",
                                            flavour_settings=flavour_layer(registry, layers))
    assert config.core.lora_rank == 4 and config.sources["lora_rank"] == "flavour:toy/small"
    assert check_config(config, registry) == ([], [])


@pytest.mark.parametrize(("first", "second", "claimed"), [
    (("toy", ("toy_sigma",)), ("other", ("toy_sigma",)), "toy-sigma"),
    (("toy", ()), ("other", ("toy",)), "toy"),
])
def test_a_name_claimed_twice_is_an_error_naming_both(empty_registry: Registry, first, second, claimed) -> None:  # type: ignore[no-untyped-def]
    empty_registry.register_plugin(AliasedToy(*first), "first", Provider(plugin="first", distribution="dist-a"))
    empty_registry.register_plugin(AliasedToy(*second), "second", Provider(plugin="second", distribution="dist-b"))
    with pytest.raises(PluginConflictError) as info:
        empty_registry.model_families()
    message = str(info.value)
    assert f"{claimed!r}" in message and "dist-a" in message and "dist-b" in message


@pytest.mark.parametrize("aliases", [("toy",), ("x", "X"), ("no/slash",)])
def test_bad_aliases_are_refused_when_declared(aliases: tuple[str, ...]) -> None:
    with pytest.raises(ValueError, match="alias|must be a name"):
        attrs.evolve(toy_family_spec(), aliases=aliases)


@pytest.fixture(scope="module")
def installed() -> Registry:
    return Registry()


# SimpleTuner's names of these families and of their flavours (ModelRegistry.register, HUGGINGFACE_PATHS)
SIMPLETUNER_FLAVOURS = {
    "flux": ["dev", "krea", "schnell"],
    "sana": ["sana1.5-4.8b-1024", "sana1.5-1.6b-1024", "sana1.0-1.6b-2048", "sana1.0-1.6b-1024",
             "sana1.0-600m-1024", "sana1.0-600m-512"],
    "pixart_sigma": ["900M-1024-v0.6", "900M-1024-v0.7-stage1", "900M-1024-v0.7-stage2", "600M-512", "600M-1024",
                     "600M-2048"],
    "sdxl": ["base-1.0", "base-0.9"],
    "sd3": ["medium", "large"],
    "chroma": ["base", "hd", "flash"],
    "flux2": ["klein-4b", "klein-9b", "dev"],
    "z_image": ["turbo", "base"],
    "qwen_image": ["v1.0", "v2.0"],
}


@pytest.mark.parametrize(("family", "flavour"), [(f, v) for f, vs in SIMPLETUNER_FLAVOURS.items() for v in vs])
def test_simpletuner_family_and_flavour_names_resolve(installed: Registry, family: str, flavour: str) -> None:
    spec = installed.model_family(family)
    found = spec.flavour(flavour)
    assert found is not None and found.name == flavour.lower()


@pytest.mark.parametrize(("family", "flavour"), [("flux", "kontext"), ("flux", "fluxbooru"), ("flux", "libreflux"),
                                                 ("sdxl", "refiner-1.0"), ("sdxl", "refiner-0.9")])
def test_simpletuner_flavours_not_offered_here_are_refused(installed: Registry, family: str, flavour: str) -> None:
    layers = [Layer("env:test", {"model_family": family, "model_flavour": flavour})]
    config, _ = build_schema(installed).load(layers, own_source="env:test")
    problems, _ = check_config(config, installed)
    assert any(p.startswith(f"$.model_flavour: {family} has no flavour {flavour!r}") for p in problems)
