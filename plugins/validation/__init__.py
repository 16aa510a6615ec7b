"""Built-in validation methods: ``pipeline`` (images from the live pipeline with a prompt library) and
``external-script`` (a user command run on each checkpoint).

This module is the entry point; it imports nothing heavy (torch and diffusers load when a method runs).
"""

from __future__ import annotations

from typing import Any

import attrs

from simpletuner.core.config.core_options import CoreOptions
from simpletuner.core.hookspecs import RegisterValidationMethod, hookimpl
from simpletuner.core.options import PRIVILEGED, option
from simpletuner.core.scripts import RUN_PLACEHOLDERS, check_command
from simpletuner.core.specs import ValidationMethodSpec, lazy
from simpletuner.plugins.validation.prompt_library import check_library


@attrs.define(kw_only=True)
class PipelineValidationOptions:
    """Options of the ``pipeline`` validation method."""

    validation_prompts: dict[str, Any] = option(
        factory=dict, label="Validation prompt library",
        help="Named prompts rendered at each validation besides validation_prompt: "
        "{\"name\": \"prompt\"} or {\"name\": {\"prompt\": ..., \"seed\": 7, \"resolution\": \"1024x768\", "
        "\"steps\": 30, \"guidance\": 4.0, \"negative_prompt\": ...}}; unset fields take the validation_* values.",
        section="validation", editor="prompt-library",
    )

    @validation_prompts.validator
    def _check_prompts(self, attribute: Any, value: dict[str, Any]) -> None:
        check_library(value, attribute.name)


@attrs.define(kw_only=True)
class ExternalScriptOptions:
    """Options of the ``external-script`` validation method."""

    validation_external_script: str | None = option(
        None, label="External validation command",
        help="Command run at each validation, e.g. 'python eval.py {local_checkpoint_path} {global_step}'. "
        "Split into arguments, never run by a shell. Placeholders: {local_checkpoint_path}, {global_step}, "
        "{tracker_run_name}, {tracker_project_name}, {model_family}, {model_type}, {lora_type}, "
        "{huggingface_path} and any {validation_*} option.", section="validation", trust=PRIVILEGED,
    )
    validation_external_background: bool = option(
        False, label="Run external validation in the background",
        help="Start the command and train on without waiting for it; its outcome is logged.",
        section="validation",
    )
    validation_external_timeout: float = option(
        3600, label="External validation timeout (s)",
        help="Seconds the command may run before it is killed and reported.", section="validation", minimum=1,
    )

    @validation_external_script.validator
    def _check_script(self, attribute: Any, value: str | None) -> None:
        if value is not None:
            check_command(value, RUN_PLACEHOLDERS | validation_option_keys(), key=attribute.name)


def validation_option_keys() -> frozenset[str]:
    """Every ``validation_*`` option of the core and of these methods: the ``{validation_*}`` placeholders."""
    classes = (CoreOptions, PipelineValidationOptions, ExternalScriptOptions)
    return frozenset(f.name for cls in classes for f in attrs.fields(cls) if f.name.startswith("validation_"))


@hookimpl
def register_validation_methods(register: RegisterValidationMethod) -> None:
    """Register ``pipeline`` and ``external-script``."""
    register(ValidationMethodSpec(
        name="pipeline", title="Generate images",
        description="Renders validation_prompt and the named validation_prompts with the model being trained.",
        options=PipelineValidationOptions, factory=lazy("simpletuner.plugins.validation.pipeline:PipelineValidation"),
    ))
    register(ValidationMethodSpec(
        name="external-script", title="External script",
        description="Runs validation_external_script on each checkpoint (e.g. inference on another GPU).",
        options=ExternalScriptOptions,
        factory=lazy("simpletuner.plugins.validation.external_script:ExternalScriptValidation"),
    ))
