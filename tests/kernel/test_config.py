"""Parsing configs: types, unknown keys, plugin options, flavour layers, write-back and cross-checks."""

from __future__ import annotations

import attrs
import pytest

from simpletuner.core.config import ConfigSchema, Layer, build_schema
from simpletuner.core.config.checks import check_config
from simpletuner.core.errors import ConfigError, PluginConflictError
from simpletuner.core.hookspecs import hookimpl
from simpletuner.core.options import option
from simpletuner.core.specs import TrackerSpec

from .toy_plugins import EverythingPlugin, ToyFamilyPlugin


@pytest.fixture
def registry(registry_with):  # type: ignore[no-untyped-def]
    registry_with(ToyFamilyPlugin(), name="toy-plugin")
    return registry_with(EverythingPlugin(), name="everything")


@pytest.fixture
def schema(registry) -> ConfigSchema:  # type: ignore[no-untyped-def]
    return build_schema(registry)


def load(schema: ConfigSchema, values: dict, **kwargs):  # type: ignore[no-untyped-def]
    return schema.load([Layer("env:test", values)], own_source="env:test", **kwargs)


SIMPLETUNER_STYLE = {
    "--model_family": "toy",
    "--model_flavour": "large",
    "--lora_rank": 16,
    "--learning_rate": "1e-4",
    "--push_to_hub": "false",
    "--gradient_checkpointing": "true",
    "--validation_num_inference_steps": "20",
    "--report_to": "toy_tracker",
    "--max_train_steps": 10000,
    "--num_train_epochs": 0,
    "--seed": 42,
    "--toy_guidance": 4,
}


def test_simpletuner_string_values_load_as_typed_values(schema: ConfigSchema) -> None:
    config, warnings = load(schema, SIMPLETUNER_STYLE)
    core = config.core
    assert (core.learning_rate, core.push_to_hub, core.gradient_checkpointing) == (1e-4, False, True)
    assert core.validation_num_inference_steps == 20 and core.report_to == ["toy_tracker"]
    assert config.get("toy_guidance") == 4.0 and isinstance(config.get("toy_guidance"), float)
    assert warnings == []


def test_round_trip_keeps_everything_the_user_set(schema: ConfigSchema) -> None:
    config, _ = load(schema, SIMPLETUNER_STYLE)
    written = config.to_file_dict()
    assert set(written) == set(SIMPLETUNER_STYLE)  # same keys, still with "--"
    assert written["--learning_rate"] == 1e-4 and written["--push_to_hub"] is False
    assert written["--report_to"] == ["toy_tracker"]
    again, _ = load(schema, written)
    assert again.core == config.core and dict(again.plugin_options) == dict(config.plugin_options)
    assert again.to_file_dict() == written


def test_keys_without_dashes_are_written_back_without_dashes(schema: ConfigSchema) -> None:
    config, _ = load(schema, {"model_family": "toy", "lora_rank": 8})
    assert config.to_file_dict() == {"model_family": "toy", "lora_rank": 8}


def test_unknown_keys_are_listed_at_once_with_the_closest_key(schema: ConfigSchema) -> None:
    with pytest.raises(ConfigError) as info:
        load(schema, {"lora_rnak": 4, "learning_rat": 1, "toy_guidence": 1, "zzzz": 1})
    assert info.value.problems == [
        "$.lora_rnak: unknown key (did you mean 'lora_rank'?)",
        "$.learning_rat: unknown key (did you mean 'learning_rate'?)",
        "$.toy_guidence: unknown key (did you mean 'toy_guidance'?)",
        "$.zzzz: unknown key",
    ]


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("lora_rank", "sixteen", "$.lora_rank: expected int, got 'sixteen'"),
        ("lora_rank", 8.5, "$.lora_rank: expected int, got 8.5"),
        ("lora_rank", True, "$.lora_rank: expected int, got True"),
        ("lora_rank", 0, "$.lora_rank: must be at least 1, got 0"),
        ("learning_rate", "fast", "$.learning_rate: expected float, got 'fast'"),
        ("push_to_hub", "maybe", "$.push_to_hub: expected bool (true or false), got 'maybe'"),
        ("model_family", ["toy"], "$.model_family: expected str, got ['toy']"),
        ("lr_scheduler", "sine", "$.lr_scheduler: 'sine' is not one of constant, constant_with_warmup, linear, "
                                 "cosine, cosine_with_restarts, polynomial"),
        ("toy_mode", "medium", "$.toy_mode: 'medium' is not one of fast, slow"),
        ("seed", {"a": 1}, "$.seed: expected int, got {'a': 1}"),
        ("report_to", 3, "$.report_to: expected a list of strings or a comma-separated string, got 3"),
    ],
)
def test_wrong_values_name_the_key_and_what_is_expected(schema, key, value, message) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError) as info:
        load(schema, {key: value})
    assert info.value.problems == [message]


def test_a_key_given_twice_is_an_error(schema: ConfigSchema) -> None:
    with pytest.raises(ConfigError, match="given twice"):
        load(schema, {"--lora_rank": 4, "lora_rank": 8})


def test_legacy_simpletuner_keys_warn_and_aliases_map(schema: ConfigSchema) -> None:
    config, warnings = load(schema, {"--disable_benchmark": False, "--checkpoint_step_interval": 250})
    assert config.core.checkpointing_steps == 250
    assert warnings == ["disable_benchmark: a SimpleTuner option that has no effect here; "
                        "remove it to silence this warning"]


def test_flavour_settings_sit_below_the_users_values(schema: ConfigSchema, registry) -> None:  # type: ignore[no-untyped-def]
    from simpletuner.core.config.loading import flavour_layer

    layers = [Layer("env:test", {"model_family": "toy", "model_flavour": "small", "toy_mode": "fast"})]
    config, _ = schema.load(layers, own_source="env:test", flavour_settings=flavour_layer(registry, layers))
    assert config.core.lora_rank == 4 and config.sources["lora_rank"] == "flavour:toy/small"
    assert config.get("toy_mode") == "fast" and config.sources["toy_mode"] == "env:test"
    assert "lora_rank" not in config.to_file_dict()


def test_plugin_options_may_not_shadow_core_options(registry_with) -> None:  # type: ignore[no-untyped-def]
    @attrs.define
    class Shadowing:
        lora_rank: int = option(4, help="x", section="model")

    class Plugin:
        @hookimpl
        def register_trackers(self, register):  # type: ignore[no-untyped-def]
            register(TrackerSpec(name="shadow", title="s", description="", options=Shadowing, factory=lambda o: 0))

    registry = registry_with(Plugin(), name="shadow")
    with pytest.raises(PluginConflictError, match="'lora_rank' is declared by both core and tracker:shadow"):
        build_schema(registry)


def test_every_option_is_described(schema: ConfigSchema) -> None:
    keys = [info.key for info in schema.options]
    assert len(keys) == len(set(keys))
    for info in schema.options:
        assert info.help.endswith(".") and info.section and info.type
    owners = {info.owner for info in schema.options}
    assert owners == {"core", "model_family:toy", "tracker:toy-tracker"}


def checked(schema, registry, values):  # type: ignore[no-untyped-def]
    config, _ = load(schema, values)
    return check_config(config, registry)


def test_check_accepts_a_good_config(schema, registry) -> None:  # type: ignore[no-untyped-def]
    assert checked(schema, registry, SIMPLETUNER_STYLE) == ([], [])


@pytest.mark.parametrize(
    ("values", "problem"),
    [
        ({}, "$.model_family: required; one of toy"),
        ({"model_family": "tyo"}, "$.model_family: unknown model family 'tyo' (did you mean 'toy'?); installed: toy"),
        ({"model_family": "toy", "model_flavour": "xl"},
         "$.model_flavour: toy has no flavour 'xl'; choose one of small, large"),
        ({"model_family": "toy", "base_model_precision": "int4-toy"},
         "$.base_model_precision: unknown precision 'int4-toy' (did you mean 'int8-toy'?); "
         "available: no_change, int8-toy"),
        ({"model_family": "toy", "max_train_steps": 100, "num_train_epochs": 2},
         "$.max_train_steps and $.num_train_epochs are both set; set only one (num_train_epochs: 0 to train by steps)"),
        ({"model_family": "toy", "report_to": "wandb"},
         "$.report_to: unknown tracker 'wandb'; installed: toy-tracker"),
        ({"model_family": "toy", "push_to_hub": True},
         "$.hub_model_id: required when push_to_hub is true (e.g. 'your-name/my-lora')"),
        ({"model_family": "toy", "validation_prompt": "a cat", "validation_method": "scrpt"},
         "$.validation_method: unknown validation method 'scrpt'; installed: pipeline"),
    ],
)
def test_check_reports_cross_option_problems(schema, registry, values, problem) -> None:  # type: ignore[no-untyped-def]
    problems, _ = checked(schema, registry, values)
    assert problems == [problem]


def test_check_warns_about_a_discouraged_precision(schema, registry) -> None:  # type: ignore[no-untyped-def]
    problems, warnings = checked(schema, registry, {"model_family": "toy", "base_model_precision": "int8-toy"})
    assert problems == []
    assert warnings == ["base_model_precision 'int8-toy' is discouraged for toy: the toy family loses detail when "
                        "quantised"]
