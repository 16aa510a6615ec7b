"""When validation runs (a prompt, an explicitly chosen method, or an option of the chosen method) and how its
images reach the trackers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from simpletuner.core.config import Layer, build_schema
from simpletuner.core.events import EventWriter
from simpletuner.core.hookspecs import hookimpl
from simpletuner.core.interfaces import ValidationContext, ValidationMethod, ValidationResult
from simpletuner.core.plugins import Registry
from simpletuner.core.specs import ValidationMethodSpec
from simpletuner.core.tracking import Tracking
from simpletuner.core.training.validation import Validator, open_validation_method, validation_enabled


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


class GroupedMethod(ValidationMethod):
    """A throw-away method whose images come in two named groups."""

    def run(self, context: ValidationContext) -> ValidationResult:
        context.output_dir.mkdir(parents=True, exist_ok=True)
        paths = []
        for name in ("cat", "dog"):
            path = context.output_dir / f"{name}-{context.step}.png"
            path.write_bytes(b"png")
            paths.append(path)
        return ValidationResult(images=paths, message="two", groups={"cat": paths[:1], "dog": paths[1:]})


class GroupedPlugin:
    @hookimpl
    def register_validation_methods(self, register):  # type: ignore[no-untyped-def]
        register(ValidationMethodSpec(name="grouped", title="Grouped", description="",
                                      factory=lambda options: GroupedMethod()))


def test_trackers_receive_images_under_their_group_names(tmp_path: Path) -> None:
    registry = Registry()
    registry.register_plugin(GroupedPlugin(), "grouped-test")
    config, _ = build_schema(registry).load(
        [Layer("env:t", {"model_family": "flux", "validation_method": "grouped", "report_to": "local"})],
        own_source="env:t")
    events = EventWriter(tmp_path / "events.jsonl")
    tracking = Tracking.start(config, registry, tmp_path)
    method = open_validation_method(config, registry)
    assert method is not None
    validator = Validator(config, method, events, tracking, tmp_path)
    event = validator.run(7, None, None, "flux")
    tracking.finish("completed")
    events.close()
    assert event["event"] == "validation" and len(event["images"]) == 2
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    (images,) = [row for row in rows if row["type"] == "images"]
    assert images["step"] == 7 and sorted(images["images"]) == ["cat", "dog"]


def test_a_background_command_reports_its_failure_to_the_run_before_it_ends(tmp_path: Path) -> None:
    import shlex
    import sys

    registry = Registry()
    command = shlex.join([sys.executable, "-c", "raise SystemExit(4)"])
    config, _ = build_schema(registry).load(
        [Layer("env:t", {"model_family": "flux", "validation_method": "external-script",
                         "validation_external_script": command, "validation_external_background": True})],
        own_source="env:t")
    events = EventWriter(tmp_path / "events.jsonl")
    method = open_validation_method(config, registry)
    assert method is not None
    validator = Validator(config, method, events, Tracking({}), tmp_path)
    assert validator.run(3, tmp_path, None, "flux")["event"] == "validation"
    validator.wait()
    events.close()
    names = [json.loads(line)["event"] for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    assert names[-1] == "script_failed" and "validation" in names
