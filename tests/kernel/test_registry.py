"""The registry facade: one test per hook, conflicts, failures, provenance."""

from __future__ import annotations

import pytest

from simpletuner.core.errors import PluginConflictError, UnknownPluginError
from simpletuner.core.hookspecs import hookimpl
from simpletuner.core.plugins import Registry
from simpletuner.core.specs import Kind, ModelFamilySpec, Provider, TrackerSpec

from .toy_plugins import EverythingPlugin, ToyFamilyPlugin, toy_family_spec


def test_register_model_families(registry_with) -> None:
    registry = registry_with(ToyFamilyPlugin(), name="toy-plugin")
    families = registry.model_families()
    assert list(families) == ["toy"]
    spec = families["toy"]
    assert spec.provider == Provider(plugin="toy-plugin")
    assert spec.flavour(None).name == "small"
    assert spec.flavour("large").pretrained == "toy/large"
    assert spec.flavour("missing") is None
    assert registry.model_family("TOY").name == "toy"


def test_register_quantizers(registry_with) -> None:
    registry = registry_with(EverythingPlugin(), name="everything")
    assert registry.quantizers()["toy-quant"].precisions == ("int8-toy",)
    assert registry.quantizer_for("int8-toy").name == "toy-quant"
    assert registry.quantizer_for("int4-toy") is None


def test_register_data_backends(registry_with) -> None:
    registry = registry_with(EverythingPlugin(), name="everything")
    assert list(registry.data_backends()) == ["local"]


def test_register_trackers(registry_with) -> None:
    registry = registry_with(EverythingPlugin(), name="everything")
    # names are normalised: toy_tracker -> toy-tracker
    assert list(registry.trackers()) == ["toy-tracker"]
    assert registry.get(Kind.TRACKER, "toy_tracker").title == "Toy tracker"


def test_register_publishers(registry_with) -> None:
    registry = registry_with(EverythingPlugin(), name="everything")
    assert list(registry.publishers()) == ["toy-publisher"]


def test_register_auth_providers(registry_with) -> None:
    registry = registry_with(EverythingPlugin(), name="everything")
    assert registry.auth_providers()["toy-auth"].style == "password"


def test_register_validation_methods(registry_with) -> None:
    registry = registry_with(EverythingPlugin(), name="everything")
    assert list(registry.validation_methods()) == ["pipeline"]


def test_unknown_name_suggests_the_closest(registry_with) -> None:
    registry = registry_with(ToyFamilyPlugin(), name="toy-plugin")
    expected = r"unknown model family 'tyo' \(did you mean 'toy'\?\); available: toy"
    with pytest.raises(UnknownPluginError, match=expected):
        registry.model_family("tyo")


def test_two_providers_of_one_name_is_an_error_naming_both(empty_registry: Registry) -> None:
    empty_registry.register_plugin(ToyFamilyPlugin(), "first", Provider(plugin="first", distribution="dist-a",
                                                                         version="1.0"))
    empty_registry.register_plugin(ToyFamilyPlugin(), "second", Provider(plugin="second", distribution="dist-b",
                                                                          version="2.0"))
    with pytest.raises(PluginConflictError) as info:
        empty_registry.model_families()
    assert "dist-a 1.0" in str(info.value) and "dist-b 2.0" in str(info.value) and "'toy'" in str(info.value)


def test_a_hook_that_raises_is_recorded_and_others_keep_working(registry_with) -> None:
    class Exploding:
        @hookimpl
        def register_model_families(self, register):  # type: ignore[no-untyped-def]
            register(toy_family_spec("half-registered"))
            raise ValueError("boom")

    registry = registry_with(ToyFamilyPlugin(), name="good")
    registry_with(Exploding(), name="exploding")
    assert list(registry.model_families()) == ["toy"]  # nothing of the failing plugin's call is kept
    failures = registry.failures()
    assert [(f.name, f.stage, f.error) for f in failures] == [
        ("exploding", "register_model_families", "ValueError: boom")
    ]
    rows = registry.rows()
    assert rows[-1].error == "register_model_families: ValueError: boom"


def test_a_spec_of_the_wrong_kind_is_a_plugin_failure(registry_with) -> None:
    class Confused:
        @hookimpl
        def register_model_families(self, register):  # type: ignore[no-untyped-def]
            register(TrackerSpec(name="x", title="x", description="", factory=lambda o: None))

    registry = registry_with(Confused(), name="confused")
    assert registry.model_families() == {}
    assert "expects ModelFamilySpec" in registry.failures()[0].error


def test_unregister_removes_the_specs(empty_registry: Registry) -> None:
    empty_registry.register_plugin(ToyFamilyPlugin(), "toy-plugin")
    assert "toy" in empty_registry.model_families()
    empty_registry.unregister_plugin("toy-plugin")
    assert empty_registry.model_families() == {}


def test_quantizers_may_not_share_a_precision(registry_with) -> None:
    registry_with(EverythingPlugin(), name="one")
    registry = registry_with(type("Again", (), {"register_quantizers": EverythingPlugin.register_quantizers,
                                                 "__init__": lambda self: None})(), name="two")
    with pytest.raises(PluginConflictError, match="toy-quant"):
        registry.quantizers()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "bad/name"}, "must be a name"),
        ({"flavours": ()}, "at least one flavour"),
        ({"default_flavour": "nope"}, "is not declared"),
        ({"options": dict}, "must be an attrs class"),
    ],
)
def test_spec_validation(kwargs: dict, message: str) -> None:
    base = dict(name="ok", title="t", description="d", factory=lambda: None,
                flavours=(toy_family_spec().flavours[0],))
    with pytest.raises((ValueError, TypeError), match=message):
        ModelFamilySpec(**{**base, **kwargs})
