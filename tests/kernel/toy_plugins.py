"""In-process throw-away plugins used by the kernel tests."""

from __future__ import annotations

import attrs

from simpletuner.core.hookspecs import hookimpl
from simpletuner.core.options import option
from simpletuner.core.specs import (
    AuthProviderSpec,
    DataBackendSpec,
    Flavour,
    MemoryPreset,
    ModelFamilySpec,
    PublisherSpec,
    QuantizerSpec,
    TrackerSpec,
    ValidationMethodSpec,
)


@attrs.define(kw_only=True)
class ToyFamilyOptions:
    toy_guidance: float = option(3.5, help="Guidance of the toy family.", section="model", minimum=0)
    toy_mode: str = option("fast", help="Mode of the toy family.", section="model", choices=("fast", "slow"))


@attrs.define(kw_only=True)
class ToyTrackerOptions:
    toy_tracker_dir: str | None = option(None, help="Where the toy tracker writes.", section="validation")


def toy_family_spec(name: str = "toy") -> ModelFamilySpec:
    return ModelFamilySpec(
        name=name,
        title="Toy",
        description="A toy family.",
        options=ToyFamilyOptions,
        flavours=(
            Flavour(name="small", pretrained="toy/small", settings={"lora_rank": 4, "toy_mode": "slow"}),
            Flavour(name="large", pretrained="toy/large"),
        ),
        precisions=("no_change", "int8-toy"),
        discouraged_precisions={"int8-toy": "the toy family loses detail when quantised"},
        memory_presets=(
            MemoryPreset(name="light", tradeoff="fast, more memory", settings={"gradient_checkpointing": False}),
            MemoryPreset(name="aggressive", tradeoff="slow, least memory", settings={"gradient_checkpointing": True}),
        ),
        factory=lambda: "toy-family-instance",
    )


class ToyFamilyPlugin:
    @hookimpl
    def register_model_families(self, register):  # type: ignore[no-untyped-def]
        register(toy_family_spec())


class EverythingPlugin:
    """Registers one spec of every kind except model families."""

    @hookimpl
    def register_quantizers(self, register):  # type: ignore[no-untyped-def]
        register(QuantizerSpec(name="toy-quant", title="Toy quantizer", description="", precisions=("int8-toy",),
                               factory=lambda: None))

    @hookimpl
    def register_data_backends(self, register):  # type: ignore[no-untyped-def]
        register(DataBackendSpec(name="local", title="Local", description="", factory=lambda *a: None))

    @hookimpl
    def register_trackers(self, register):  # type: ignore[no-untyped-def]
        register(TrackerSpec(name="toy_tracker", title="Toy tracker", description="", options=ToyTrackerOptions,
                             factory=lambda options: None))

    @hookimpl
    def register_publishers(self, register):  # type: ignore[no-untyped-def]
        register(PublisherSpec(name="toy-publisher", title="Toy publisher", description="", factory=lambda o: None))

    @hookimpl
    def register_auth_providers(self, register):  # type: ignore[no-untyped-def]
        register(AuthProviderSpec(name="toy-auth", title="Toy login", description="", style="password",
                                  factory=lambda o: None))

    @hookimpl
    def register_validation_methods(self, register):  # type: ignore[no-untyped-def]
        register(ValidationMethodSpec(name="pipeline", title="Pipeline", description="", factory=lambda o: None))
