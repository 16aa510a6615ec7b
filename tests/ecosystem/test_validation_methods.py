"""Validation methods: images from a tiny real Flux pipeline with a prompt library, and the external script."""

from __future__ import annotations

import json
import shlex
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import pytest
from PIL import Image
from tiny_models import build_tiny

from simpletuner.core.errors import ConfigError
from simpletuner.core.interfaces import ValidationContext
from simpletuner.core.plugins import Registry
from simpletuner.core.specs import Kind


def context(tmp_path: Path, options: dict[str, Any], pipeline: Any = None, step: int = 100,
            checkpoint: Path | None = None) -> ValidationContext:
    return ValidationContext(step=step, checkpoint_path=checkpoint, output_dir=tmp_path / "out" / "validation",
                             project_name="proj", run_name="run one", model_family="flux", model_type="lora",
                             lora_type="standard", options=options, pipeline=pipeline)


def build_method(registry: Registry, config: Any, name: str) -> Any:
    spec = registry.get(Kind.VALIDATION_METHOD, name)
    return spec.build(config.options_for(spec))


def all_options(config: Any) -> dict[str, Any]:
    return {info.key: value for info, value, _ in config.effective()}


# -- pipeline -------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_pipeline(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from diffusers import FluxPipeline

    folder = build_tiny("flux", tmp_path_factory.mktemp("tiny-flux"))
    pipeline = FluxPipeline.from_pretrained(str(folder))
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


def test_pipeline_renders_the_prompt_library_seeded(tmp_path: Path, tiny_pipeline: Any, load_config: Callable,
                                                    registry: Registry) -> None:
    import numpy as np
    import torch

    config = load_config({
        "validation_prompt": "a photo of a cat", "validation_resolution": "32", "validation_seed": 5,
        "validation_num_inference_steps": 1, "validation_guidance": 3.5,
        "validation_prompts": {"wide dog": {"prompt": "a green dog", "seed": 3, "resolution": "48x32", "steps": 2,
                                            "guidance": 2.0},
                               "bird": "an orange bird"},
    })
    method = build_method(registry, config, "pipeline")
    result = method.run(context(tmp_path, all_options(config), tiny_pipeline))

    names = [p.name for p in result.images]
    assert names == ["validation-step000100-seed5-32x32.png", "wide_dog-step000100-seed3-48x32.png",
                     "bird-step000100-seed5-32x32.png"]
    assert all(p.parent == tmp_path / "out" / "validation" for p in result.images)
    # trackers file each image under its prompt's name
    assert {name: [p.name for p in paths] for name, paths in result.groups.items()} == {
        "validation": [names[0]], "wide dog": [names[1]], "bird": [names[2]]}
    with Image.open(result.images[1]) as image:
        assert image.size == (48, 32)
        assert image.text == {"name": "wide dog", "prompt": "a green dog", "seed": "3", "steps": "2",
                              "guidance": "2.0", "step": "100"}
        rendered = np.asarray(image.convert("RGB"))
    # The same settings given to the pipeline directly give the same picture: seed, size, steps and guidance
    # really reached it.
    direct = tiny_pipeline(prompt="a green dog", width=48, height=32, num_inference_steps=2, guidance_scale=2.0,
                           generator=torch.Generator().manual_seed(3)).images[0]
    assert np.array_equal(rendered, np.asarray(direct.convert("RGB")))

    again = method.run(context(tmp_path / "again", all_options(config), tiny_pipeline))
    for first, second in zip(result.images, again.images, strict=True):
        with Image.open(first) as a, Image.open(second) as b:
            assert a.tobytes() == b.tobytes()
    with Image.open(result.images[0]) as cat, Image.open(result.images[2]) as bird:
        assert cat.tobytes() != bird.tobytes()  # same seed, different prompt


def test_pipeline_method_needs_a_pipeline_and_a_prompt(tmp_path: Path, load_config: Callable,
                                                       registry: Registry) -> None:
    config = load_config({"validation_prompt": "a cat"})
    method = build_method(registry, config, "pipeline")
    with pytest.raises(ValueError, match="needs the live pipeline"):
        method.run(context(tmp_path, all_options(config)))
    empty = load_config({})
    with pytest.raises(ValueError, match="set validation_prompt or validation_prompts"):
        build_method(registry, empty, "pipeline").run(context(tmp_path, all_options(empty), pipeline=object()))


@pytest.mark.parametrize(("library", "message"), [
    ({"cat": {"prompt": "a cat", "sead": 1}}, r"\$\.validation_prompts\.cat: unknown field\(s\) sead"),
    ({"cat": {"prompt": "a cat", "seed": 1.5}}, r"\$\.validation_prompts\.cat\.seed: expected int"),
    ({"cat": {"prompt": "a cat", "resolution": "wide"}}, r"\$\.validation_prompts\.cat\.resolution: expected a size"),
    ({"cat": {"seed": 1}}, r"\$\.validation_prompts\.cat\.prompt: required"),
    ({"cat": {"prompt": "a cat", "steps": 0}}, r"\$\.validation_prompts\.cat\.steps: must be at least 1"),
    ({"cat": 3}, r"\$\.validation_prompts\.cat: expected a prompt string"),
])
def test_prompt_library_problems_are_config_errors(load_config: Callable, library: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config({"validation_prompts": library})


# -- external script ------------------------------------------------------------------------------------------

DUMP = textwrap.dedent("""
    import json, sys
    with open(sys.argv[1], "w") as handle:
        json.dump(sys.argv[2:], handle)
    sys.exit(int(sys.argv[-1]) if sys.argv[-1].isdigit() else 0)
""")


@pytest.fixture
def dump(tmp_path: Path) -> tuple[Path, Path]:
    script = tmp_path / "my scripts" / "eval's.py"
    script.parent.mkdir()
    script.write_text(DUMP)
    return script, tmp_path / "argv.json"


def command(script: Path, out: Path, *args: str) -> str:
    return shlex.join([sys.executable, str(script), str(out)]) + " " + " ".join(args)


def test_external_script_receives_every_placeholder_literally(tmp_path: Path, dump: tuple[Path, Path],
                                                              load_config: Callable, registry: Registry) -> None:
    script, out = dump
    config = load_config({
        "validation_method": "external-script", "hub_model_id": "me/lora",
        "validation_prompt": "it's a \"cat\"; rm -rf ~",
        "validation_external_script": command(script, out, "{local_checkpoint_path}", "--step={global_step}",
                                              "{tracker_run_name}", "{tracker_project_name}", "{model_family}",
                                              "{model_type}", "{lora_type}", "{huggingface_path}",
                                              "{validation_prompt}", "{validation_external_background}"),
    })
    method = build_method(registry, config, "external-script")
    assert method.needs_pipeline is False
    checkpoint = tmp_path / "out dir" / "checkpoint-100"
    result = method.run(context(tmp_path, all_options(config), checkpoint=checkpoint))
    assert "finished at step 100" in result.message and result.images == ()
    assert json.loads(out.read_text()) == [str(checkpoint), "--step=100", "run one", "proj", "flux", "lora",
                                           "standard", "me/lora", "it's a \"cat\"; rm -rf ~", "false"]

    # After training there is no checkpoint: the run's output folder (where the final model is) is passed.
    method.run(context(tmp_path, all_options(config), checkpoint=None))
    assert json.loads(out.read_text())[0] == str(tmp_path / "out")


def test_external_script_unknown_placeholder_is_rejected_at_load(load_config: Callable) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config({"validation_external_script": "eval.py {checkpoint_path} {validation_promt}"})
    (problem,) = caught.value.problems
    assert problem.startswith("$.validation_external_script: unknown placeholder(s) {checkpoint_path}, "
                              "{validation_promt}; known: ")
    assert "{validation_prompt}" in problem and "{local_checkpoint_path}" in problem


def test_external_script_failure_and_timeout_raise_for_the_engine_to_report(
        tmp_path: Path, dump: tuple[Path, Path], load_config: Callable, registry: Registry) -> None:
    script, out = dump
    config = load_config({"validation_external_script": command(script, out, "{global_step}", "4")})
    with pytest.raises(RuntimeError, match="exited with status 4"):
        build_method(registry, config, "external-script").run(context(tmp_path, all_options(config)))

    hang = tmp_path / "hang.py"
    hang.write_text("import time\ntime.sleep(600)")
    config = load_config({"validation_external_script": shlex.join([sys.executable, str(hang)]),
                          "validation_external_timeout": 1})
    with pytest.raises(RuntimeError, match="killed after running longer than 1 s"):
        build_method(registry, config, "external-script").run(context(tmp_path, all_options(config)))


def test_external_script_in_the_background(tmp_path: Path, load_config: Callable, registry: Registry) -> None:
    gate, done = tmp_path / "gate", tmp_path / "done"
    script = tmp_path / "wait.py"
    script.write_text(textwrap.dedent(f"""
        import pathlib, sys, time
        while not pathlib.Path({str(gate)!r}).exists():
            time.sleep(0.01)
        pathlib.Path({str(done)!r}).write_text(sys.argv[1])
    """))
    config = load_config({"validation_external_script": shlex.join([sys.executable, str(script)]) + " {global_step}",
                          "validation_external_background": True})
    method = build_method(registry, config, "external-script")
    events: list[dict[str, Any]] = []
    result = method.run(attrs.evolve(context(tmp_path, all_options(config), step=7), on_event=events.append))
    assert result.message.startswith("started ") and not done.exists()
    gate.write_text("go")
    method.wait()
    assert done.read_text() == "7"
    assert [e["event"] for e in events] == ["script_started", "script_finished"]


def test_a_failing_background_script_reaches_the_event_stream(tmp_path: Path, load_config: Callable,
                                                             registry: Registry) -> None:
    config = load_config({"validation_external_script": shlex.join([sys.executable, "-c", "raise SystemExit(3)"]),
                          "validation_external_background": True})
    method = build_method(registry, config, "external-script")
    events: list[dict[str, Any]] = []
    method.run(attrs.evolve(context(tmp_path, all_options(config)), on_event=events.append))
    method.wait()
    (failed,) = [e for e in events if e["event"] == "script_failed"]
    assert failed["purpose"] == "validation" and "3" in failed["error"]


def test_external_script_method_without_a_command_is_a_clear_error(load_config: Callable,
                                                                   registry: Registry) -> None:
    with pytest.raises(ValueError, match="validation_external_script is not set"):
        build_method(registry, load_config({}), "external-script")
