"""Running user commands at points of a training run: after a checkpoint, after an upload, for external validation.

A command is a template such as ``python eval.py --ckpt {local_checkpoint_path} --step {global_step}``. It is split
into an argument list *first* (with shell-like quoting rules) and placeholders are substituted inside each argument
*afterwards*, so a value with spaces, quotes or ``; rm -rf ~`` stays one literal argument: no shell ever sees it.
``{{`` and ``}}`` stand for literal braces.

A failing, crashing or hanging command never stops training: it is reported (logged and passed to the event
callback) and, when it outlives its timeout, killed.

The engine's calls, one line each::

    scripts = HookScripts.from_config(config, on_event=emit)
    scripts.after_checkpoint(checkpoint_dir, step)             # runs post_checkpoint_script, if set
    scripts.after_upload(remote_location, checkpoint_dir, step)  # runs post_upload_script, if set
    scripts.wait()                                             # at the end: let background commands finish
"""

from __future__ import annotations

import json
import logging
import os
import re
import shlex
import subprocess
import threading
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import attrs

logger = logging.getLogger(__name__)

#: Receives one event dict per notable thing (``{"event": "script_failed", ...}``); must not raise.
EventCallback = Callable[[dict[str, Any]], None]

#: Placeholders every run-time command may use (checkpoint, upload and external-validation commands).
RUN_PLACEHOLDERS: frozenset[str] = frozenset(
    {
        "local_checkpoint_path",
        "global_step",
        "tracker_run_name",
        "tracker_project_name",
        "model_family",
        "model_type",
        "lora_type",
        "huggingface_path",
    }
)
#: Placeholders ``post_upload_script`` may use on top of :data:`RUN_PLACEHOLDERS`.
UPLOAD_PLACEHOLDERS: frozenset[str] = RUN_PLACEHOLDERS | {"remote_checkpoint_path"}

#: Seconds a post-checkpoint or post-upload command may run before it is killed.
DEFAULT_TIMEOUT = 3600.0

_TOKEN = re.compile(r"\{\{|\}\}|\{([^{}]*)\}")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_OUTPUT_TAIL = 2000


class CommandError(ValueError):
    """A command template that cannot be used; the message names the problem and the fix."""


def placeholders(template: str) -> list[str]:
    """The placeholder names a template uses, in order of first use (``{{``/``}}`` escapes are skipped)."""
    found: list[str] = []
    for match in _TOKEN.finditer(template):
        name = match.group(1)
        if name is not None and name not in found:
            found.append(name)
    return found


def check_command(template: str, allowed: Iterable[str], *, pattern_allowed: Callable[[str], bool] | None = None,
                  key: str = "command") -> None:
    """Raise :class:`CommandError` if ``template`` cannot be split or uses a placeholder not in ``allowed``.

    ``pattern_allowed`` may accept further names (e.g. any ``validation_*`` option). The message lists every
    unknown placeholder and the known ones, prefixed by ``$.<key>:`` so it reads as a config problem.
    """
    if not template.strip():
        raise CommandError(f"$.{key}: the command is empty; give a program and its arguments, or remove the key")
    try:
        parts = shlex.split(template)
    except ValueError as exc:
        raise CommandError(f"$.{key}: cannot split {template!r} into arguments ({exc}); close the quotes") from None
    if not parts:
        raise CommandError(f"$.{key}: the command is empty")
    allowed_set = set(allowed)
    unknown = []
    for name in placeholders(template):
        if not _NAME.match(name):
            unknown.append(name)
        elif name not in allowed_set and not (pattern_allowed and pattern_allowed(name)):
            unknown.append(name)
    if unknown:
        listed = ", ".join("{" + n + "}" for n in unknown)
        known = ", ".join("{" + n + "}" for n in sorted(allowed_set))
        raise CommandError(f"$.{key}: unknown placeholder(s) {listed}; known: {known}"
                           + (" and {validation_*} options" if pattern_allowed else "")
                           + "; write {{ and }} for literal braces")


def format_value(value: Any) -> str:
    """How a config value reads inside a command: ``None`` is empty, booleans ``true``/``false``, lists joined by
    commas, objects as JSON."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return ",".join(format_value(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True)
    return str(value)


def render_command(template: str, values: Mapping[str, Any]) -> list[str]:
    """Split ``template`` into arguments, then substitute ``values`` inside each argument.

    Raises :class:`CommandError` for a placeholder without a value (checked at config load for user templates).
    """
    try:
        parts = shlex.split(template)
    except ValueError as exc:
        raise CommandError(f"cannot split {template!r} into arguments ({exc})") from None

    def substitute(match: re.Match[str]) -> str:
        token = match.group(0)
        if token == "{{":
            return "{"
        if token == "}}":
            return "}"
        name = match.group(1)
        if name not in values:
            raise CommandError(f"placeholder {{{name}}} has no value; known: {', '.join(sorted(values))}")
        return format_value(values[name])

    return [_TOKEN.sub(substitute, part) for part in parts]


@attrs.frozen
class ScriptResult:
    """The outcome of one command. ``returncode`` is None while a background command runs or when it could not
    start; ``timed_out`` is True when it was killed for running too long."""

    purpose: str
    argv: tuple[str, ...]
    returncode: int | None
    timed_out: bool = False
    error: str | None = None
    output_tail: str = ""

    @property
    def ok(self) -> bool:
        """Whether the command ran and exited with status 0."""
        return self.returncode == 0 and not self.timed_out and self.error is None


class ScriptRunner:
    """Runs commands as argument lists (never through a shell), with a timeout, reporting instead of raising.

    Args:
        on_event: receives ``script_started`` / ``script_finished`` / ``script_failed`` events.
        cwd: working folder of the commands (the current one if None).
        env: extra environment variables for the commands.
    """

    def __init__(self, on_event: EventCallback | None = None, cwd: Path | None = None,
                 env: Mapping[str, str] | None = None) -> None:
        self._on_event = on_event
        self._cwd = cwd
        self._env = {**os.environ, **(env or {})}
        self._background: list[threading.Thread] = []
        self._lock = threading.Lock()

    def run(self, purpose: str, template: str, values: Mapping[str, Any], *, timeout: float = DEFAULT_TIMEOUT,
            background: bool = False) -> ScriptResult:
        """Run ``template`` with ``values`` substituted.

        In the foreground the call returns when the command ends or is killed at ``timeout`` seconds. In the
        background it returns at once (``returncode`` None) and the outcome is reported through the event callback;
        :meth:`wait` waits for such commands.
        """
        try:
            argv = tuple(render_command(template, values))
        except CommandError as exc:
            return self._report(ScriptResult(purpose, (), None, error=str(exc)))
        try:
            process = subprocess.Popen(argv, cwd=self._cwd, env=self._env, stdin=subprocess.DEVNULL,
                                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
        except OSError as exc:
            return self._report(ScriptResult(purpose, argv, None, error=f"cannot start {argv[0]!r}: {exc}"))
        self._emit({"event": "script_started", "purpose": purpose, "argv": list(argv), "pid": process.pid,
                    "background": background})
        if not background:
            return self._finish(purpose, argv, process, timeout)
        thread = threading.Thread(target=self._finish, args=(purpose, argv, process, timeout),
                                  name=f"script-{purpose}", daemon=True)
        with self._lock:
            self._background = [t for t in self._background if t.is_alive()] + [thread]
        thread.start()
        return ScriptResult(purpose, argv, None)

    def wait(self, timeout: float | None = None) -> None:
        """Wait for background commands (each is still bounded by its own timeout)."""
        with self._lock:
            threads = list(self._background)
        for thread in threads:
            thread.join(timeout)

    def _finish(self, purpose: str, argv: tuple[str, ...], process: subprocess.Popen[bytes],
                timeout: float) -> ScriptResult:
        try:
            output, _ = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_group(process)
            output, _ = process.communicate()
            return self._report(ScriptResult(purpose, argv, process.returncode, timed_out=True,
                                             error=f"killed after running longer than {timeout:g} s",
                                             output_tail=_tail(output)))
        result = ScriptResult(purpose, argv, process.returncode, output_tail=_tail(output))
        if result.returncode != 0:
            result = attrs.evolve(result, error=f"exited with status {result.returncode}")
        return self._report(result)

    def _report(self, result: ScriptResult) -> ScriptResult:
        if result.ok:
            self._emit({"event": "script_finished", "purpose": result.purpose, "argv": list(result.argv),
                        "returncode": 0})
            return result
        command = shlex.join(result.argv) if result.argv else "(not started)"
        logger.warning("%s command %s failed: %s\n%s", result.purpose, command, result.error, result.output_tail)
        self._emit({"event": "script_failed", "purpose": result.purpose, "argv": list(result.argv),
                    "returncode": result.returncode, "timed_out": result.timed_out, "error": result.error,
                    "output_tail": result.output_tail})
        return result

    def _emit(self, event: dict[str, Any]) -> None:
        if self._on_event is None:
            return
        try:
            self._on_event(event)
        except Exception:  # a broken listener must not turn a report into a training failure
            logger.exception("event callback failed for %s", event.get("event"))


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    # The command runs in its own session, so children it spawned (a shell script's programs) die with it.
    try:
        os.killpg(process.pid, 9)
    except (ProcessLookupError, PermissionError):
        process.kill()


def _tail(output: bytes | None) -> str:
    return (output or b"")[-_OUTPUT_TAIL:].decode("utf-8", errors="replace")


def run_values(config: Any, *, step: int, checkpoint_path: Path | str | None, **extra: Any) -> dict[str, Any]:
    """The placeholder values of a run: :data:`RUN_PLACEHOLDERS` from a loaded ``TrainingConfig`` and the step,
    every ``validation_*`` option, plus ``extra`` (e.g. ``remote_checkpoint_path``)."""
    core = config.core
    values: dict[str, Any] = {
        "local_checkpoint_path": str(checkpoint_path) if checkpoint_path is not None else "",
        "global_step": step,
        "tracker_run_name": core.tracker_run_name,
        "tracker_project_name": core.tracker_project_name,
        "model_family": core.model_family,
        "model_type": core.model_type,
        "lora_type": core.lora_type,
        "huggingface_path": core.hub_model_id,
    }
    for info in config.schema.options:
        if info.key.startswith("validation_"):
            values[info.key] = config.get(info.key)
    values.update(extra)
    return values


class HookScripts:
    """``post_checkpoint_script`` and ``post_upload_script`` of a run; build with :meth:`from_config`."""

    def __init__(self, config: Any, runner: ScriptRunner, timeout: float = DEFAULT_TIMEOUT) -> None:
        self._config = config
        self._runner = runner
        self._timeout = timeout

    @classmethod
    def from_config(cls, config: Any, on_event: EventCallback | None = None, cwd: Path | None = None) -> HookScripts:
        """The hook scripts of a loaded ``TrainingConfig``; reports go to ``on_event`` and the log."""
        return cls(config, ScriptRunner(on_event=on_event, cwd=cwd), timeout=float(config.core.script_timeout))

    def after_checkpoint(self, checkpoint_path: Path, step: int) -> ScriptResult | None:
        """Run ``post_checkpoint_script`` (in the foreground, bounded by the timeout); None if unset."""
        template = self._config.core.post_checkpoint_script
        if not template:
            return None
        return self._runner.run("post_checkpoint", template,
                                run_values(self._config, step=step, checkpoint_path=checkpoint_path),
                                timeout=self._timeout)

    def after_upload(self, remote_location: str, checkpoint_path: Path | None, step: int) -> ScriptResult | None:
        """Run ``post_upload_script`` with ``{remote_checkpoint_path}``; None if unset."""
        template = self._config.core.post_upload_script
        if not template:
            return None
        values = run_values(self._config, step=step, checkpoint_path=checkpoint_path,
                            remote_checkpoint_path=remote_location)
        return self._runner.run("post_upload", template, values, timeout=self._timeout)

    def wait(self) -> None:
        """Wait for commands still running in the background."""
        self._runner.wait()
