"""Commands run at points of a run: placeholder substitution without a shell, failures, timeouts, background."""

from __future__ import annotations

import json
import shlex
import sys
import textwrap
from pathlib import Path

import pytest

from simpletuner.core.config.schema import ConfigSchema, Layer
from simpletuner.core.errors import ConfigError
from simpletuner.core.scripts import (
    RUN_PLACEHOLDERS,
    CommandError,
    HookScripts,
    ScriptRunner,
    check_command,
    placeholders,
    render_command,
)

DUMP_ARGV = textwrap.dedent("""
    import json, sys
    with open(sys.argv[1], "w") as handle:
        json.dump(sys.argv[2:], handle)
""")


@pytest.fixture
def dump_script(tmp_path: Path) -> Path:
    path = tmp_path / "dump argv.py"
    path.write_text(DUMP_ARGV)
    return path


def python_command(script: Path, *rest: str) -> str:
    return shlex.join([sys.executable, str(script)]) + " " + " ".join(rest)


def load_core(values: dict) -> object:
    config, _ = ConfigSchema.from_specs([]).load([Layer("env:t", values)], own_source="env:t")
    return config


def test_values_stay_single_literal_arguments(tmp_path: Path, dump_script: Path) -> None:
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep.txt").write_text("still here")
    hostile = f"ckpt dir/it's \"quoted\"; rm -rf {victim} && echo $HOME `id`"
    out = tmp_path / "argv.json"
    events: list[dict] = []
    template = python_command(dump_script, shlex.quote(str(out)),
                              "--ckpt {local_checkpoint_path}", "--step={global_step}", "'{tracker_run_name} x'",
                              "{{literal}}")
    result = ScriptRunner(on_event=events.append).run(
        "test", template, {"local_checkpoint_path": hostile, "global_step": 7, "tracker_run_name": "a;b"})
    assert result.ok, result
    assert json.loads(out.read_text()) == ["--ckpt", hostile, "--step=7", "a;b x", "{literal}"]
    assert (victim / "keep.txt").read_text() == "still here"
    assert [e["event"] for e in events] == ["script_started", "script_finished"]


def test_placeholders_and_rendering_of_config_values() -> None:
    assert placeholders("run {a} {{b}} {a} {c}") == ["a", "c"]
    assert render_command("x {flag} {items} {none} {obj}", {
        "flag": True, "items": ["p", "q"], "none": None, "obj": {"k": 1}}) == ["x", "true", "p,q", "", '{"k": 1}']
    with pytest.raises(CommandError, match=r"\{missing\} has no value"):
        render_command("x {missing}", {})


@pytest.mark.parametrize(("template", "message"), [
    ("eval.py {local_checkpoint_path} {checkpoint}", r"unknown placeholder\(s\) \{checkpoint\}"),
    ("eval.py {global_step} {bad name}", r"\{bad name\}"),
    ("eval.py 'unclosed", "close the quotes"),
    ("   ", "the command is empty"),
])
def test_check_command_rejects_bad_templates(template: str, message: str) -> None:
    with pytest.raises(CommandError, match=message):
        check_command(template, RUN_PLACEHOLDERS, key="post_checkpoint_script")


def test_unknown_placeholder_is_a_config_error_at_load() -> None:
    with pytest.raises(ConfigError) as caught:
        load_core({"post_checkpoint_script": "eval.py {local_checkpoint_path} {step}",
                   "post_upload_script": "notify.sh {remote_checkpoint_path} {validation_prompt}"})
    assert caught.value.problems == [
        "$.post_checkpoint_script: unknown placeholder(s) {step}; known: "
        + ", ".join("{" + n + "}" for n in sorted(RUN_PLACEHOLDERS | _core_validation_keys()))
        + "; write {{ and }} for literal braces"
    ]
    with pytest.raises(ConfigError, match=r"post_checkpoint_script: unknown placeholder\(s\) \{remote_checkpoint_path"):
        load_core({"post_checkpoint_script": "x {remote_checkpoint_path}"})


def _core_validation_keys() -> set[str]:
    from simpletuner.core.config.core_options import _core_validation_keys as keys

    return set(keys())


def test_failure_and_missing_program_are_reported_not_raised(tmp_path: Path) -> None:
    script = tmp_path / "fail.py"
    script.write_text("import sys; print('model not found'); sys.exit(3)")
    events: list[dict] = []
    runner = ScriptRunner(on_event=events.append)
    result = runner.run("post_checkpoint", python_command(script), {})
    assert (result.returncode, result.ok, result.error) == (3, False, "exited with status 3")
    assert "model not found" in result.output_tail
    assert events[-1]["event"] == "script_failed" and events[-1]["returncode"] == 3

    missing = runner.run("post_checkpoint", str(tmp_path / "no-such-program") + " {global_step}", {"global_step": 1})
    assert missing.returncode is None and "cannot start" in (missing.error or "")
    assert events[-1]["event"] == "script_failed"


def test_hanging_command_is_killed_at_its_timeout(tmp_path: Path) -> None:
    script = tmp_path / "hang.py"
    script.write_text("import time\nprint('working', flush=True)\ntime.sleep(600)")
    events: list[dict] = []
    result = ScriptRunner(on_event=events.append).run("validation", python_command(script), {}, timeout=0.5)
    assert result.timed_out and not result.ok and result.returncode is not None and result.returncode < 0
    assert "working" in result.output_tail
    assert events[-1] | {"argv": None, "output_tail": None} == {
        "event": "script_failed", "purpose": "validation", "argv": None, "returncode": result.returncode,
        "timed_out": True, "error": "killed after running longer than 0.5 s", "output_tail": None}


def test_background_command_does_not_block_the_caller(tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    done = tmp_path / "done"
    script = tmp_path / "wait.py"
    # The command can only finish after the caller got control back and opened the gate.
    script.write_text(textwrap.dedent(f"""
        import pathlib, time
        while not pathlib.Path({str(gate)!r}).exists():
            time.sleep(0.01)
        pathlib.Path({str(done)!r}).write_text("ok")
    """))
    events: list[dict] = []
    runner = ScriptRunner(on_event=events.append)
    result = runner.run("validation", python_command(script), {}, timeout=60, background=True)
    assert result.returncode is None and not done.exists()
    gate.write_text("go")
    runner.wait()
    assert done.read_text() == "ok"
    assert [e["event"] for e in events] == ["script_started", "script_finished"]


def test_hook_scripts_from_config(tmp_path: Path, dump_script: Path) -> None:
    out = tmp_path / "argv.json"
    config = load_core({
        "model_family": "flux", "tracker_run_name": "run one", "hub_model_id": "me/lora",
        "validation_prompt": "a cat; echo pwned", "script_timeout": 30,
        "post_checkpoint_script": python_command(dump_script, shlex.quote(str(out)), "{local_checkpoint_path}",
                                                 "{global_step}", "{model_family}", "{tracker_run_name}",
                                                 "{validation_prompt}"),
        "post_upload_script": python_command(dump_script, shlex.quote(str(out)), "{remote_checkpoint_path}",
                                             "{huggingface_path}"),
    })
    scripts = HookScripts.from_config(config)
    result = scripts.after_checkpoint(tmp_path / "checkpoint-10", 10)
    assert result is not None and result.ok
    assert json.loads(out.read_text()) == [str(tmp_path / "checkpoint-10"), "10", "flux", "run one",
                                           "a cat; echo pwned"]
    scripts.after_upload("https://hub/me/lora/tree/main/checkpoint-10", tmp_path / "checkpoint-10", 10)
    assert json.loads(out.read_text()) == ["https://hub/me/lora/tree/main/checkpoint-10", "me/lora"]
    assert HookScripts.from_config(load_core({})).after_checkpoint(tmp_path, 1) is None
