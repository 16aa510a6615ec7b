"""When validation runs: a prompt, an explicitly chosen method, or an option of the chosen method."""

from __future__ import annotations

import pytest

from simpletuner.core.config import Layer, build_schema
from simpletuner.core.plugins import Registry
from simpletuner.core.training.validation import validation_enabled


@pytest.fixture(scope="module")
def schema():  # type: ignore[no-untyped-def]
    return build_schema(Registry())


@pytest.mark.parametrize(("values", "enabled"), [
    ({}, False),
    ({"validation_prompt": "a cat"}, True),
    ({"validation_method": "external-script", "validation_external_script": "true"}, True),
    ({"validation_prompts": {"cat": "a cat"}}, True),
    # an option of another method than the chosen one (pipeline, the default) does not start validation
    ({"validation_external_background": True}, False),
])
def test_validation_enabled(schema, values: dict, enabled: bool) -> None:  # type: ignore[no-untyped-def]
    config, _ = schema.load([Layer("env:t", {"model_family": "flux", **values})], own_source="env:t")
    assert validation_enabled(config) is enabled
