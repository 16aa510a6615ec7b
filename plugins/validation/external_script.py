"""The ``external-script`` validation method: a user command run with the checkpoint's facts as arguments."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from simpletuner.core.interfaces import ValidationContext, ValidationMethod, ValidationResult
from simpletuner.core.scripts import ScriptRunner

logger = logging.getLogger(__name__)


class ExternalScriptValidation(ValidationMethod):
    """Runs ``validation_external_script``; in the foreground a failure or timeout raises (the engine reports it
    and trains on), in the background the outcome is logged and sent to the run's event stream.

    ``{local_checkpoint_path}`` is the checkpoint folder, or the run's output folder (the parent of the validation
    folder, where the final model is) for the validation after training.
    """

    #: The command reads the checkpoint from disk; the engine need not build a pipeline for it.
    needs_pipeline = False

    def __init__(self, options: Any, runner: ScriptRunner | None = None) -> None:
        if not options.validation_external_script:
            raise ValueError("validation_method is 'external-script' but validation_external_script is not set; "
                             "set it to the command to run, e.g. 'python eval.py {local_checkpoint_path}'")
        self._options = options
        self._runner = runner or ScriptRunner(on_event=self._report)
        self._on_event: Callable[[dict[str, Any]], None] | None = None

    def run(self, context: ValidationContext) -> ValidationResult:
        """Run the command for ``context.step``."""
        checkpoint = context.checkpoint_path if context.checkpoint_path is not None else context.output_dir.parent
        values: dict[str, Any] = {k: v for k, v in context.options.items() if k.startswith("validation_")}
        values.update({
            "local_checkpoint_path": str(checkpoint),
            "global_step": context.step,
            "tracker_run_name": context.run_name,
            "tracker_project_name": context.project_name,
            "model_family": context.model_family,
            "model_type": context.model_type,
            "lora_type": context.lora_type,
            "huggingface_path": context.options.get("hub_model_id"),
        })
        self._on_event = context.on_event
        background = self._options.validation_external_background
        result = self._runner.run("validation", self._options.validation_external_script, values,
                                  timeout=self._options.validation_external_timeout, background=background)
        if background and result.error is None:
            return ValidationResult(message=f"started {result.argv[0]} in the background")
        if not result.ok:
            tail = f"; last output: {result.output_tail.strip()[-500:]}" if result.output_tail.strip() else ""
            raise RuntimeError(f"validation_external_script {result.error}{tail}")
        return ValidationResult(message=f"{result.argv[0]} finished at step {context.step}")

    def wait(self) -> None:
        """Wait for commands started in the background."""
        self._runner.wait()

    def _report(self, event: dict[str, Any]) -> None:
        """Log a command's outcome and pass it to the run's event stream (background failures included)."""
        if event["event"] == "script_finished":
            logger.info("external validation finished: %s", " ".join(event["argv"]))
        if self._on_event is not None:
            self._on_event(event)

