"""Running the configured validation method with a :class:`ValidationContext`; failures are reported, never fatal."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import attrs

from simpletuner.core.events import EventWriter
from simpletuner.core.interfaces import ValidationContext, ValidationMethod
from simpletuner.core.plugins import Registry
from simpletuner.core.specs import Kind, ValidationMethodSpec, normalize_name
from simpletuner.core.tracking import Tracking


def validation_enabled(config: Any) -> bool:
    """Validation runs when a prompt is set, a validation method is chosen explicitly, or any option of the chosen
    method is set (e.g. only a ``validation_prompts`` library)."""
    if config.core.validation_prompt is not None or "validation_method" in config.sources:
        return True
    owner = f"validation_method:{normalize_name(config.core.validation_method)}"
    return any(config.schema.owner_of_key(key) == owner for key in config.sources)


def context_options(config: Any) -> dict[str, Any]:
    """Every option of the run (core and plugins) by key, for the method to read what it needs."""
    options = attrs.asdict(config.core)
    for instance in config.plugin_options.values():
        options.update(attrs.asdict(instance))
    return options


def open_validation_method(config: Any, registry: Registry) -> ValidationMethod | None:
    """The run's validation method, built before any heavy work so a misconfigured one fails at once (None when
    the run does not validate)."""
    if not validation_enabled(config):
        return None
    spec = registry.get(Kind.VALIDATION_METHOD, normalize_name(config.core.validation_method))
    assert isinstance(spec, ValidationMethodSpec)
    return spec.build(config.options_for(spec))


class Validator:
    """Runs the run's validation method at each validation point and reports its images to the trackers."""

    def __init__(self, config: Any, method: ValidationMethod, events: EventWriter, tracking: Tracking,
                 output_dir: Path) -> None:
        self.config = config
        self.method = method
        self.events = events
        self.tracking = tracking
        self.output_dir = output_dir
        self.name = normalize_name(config.core.validation_method)
        #: Whether the method wants the live pipeline (methods that run elsewhere may say False).
        self.needs_pipeline = bool(getattr(method, "needs_pipeline", True))

    def wait(self) -> None:
        """Wait for work the method started in the background (e.g. external commands), if it has any."""
        wait = getattr(self.method, "wait", None)
        if callable(wait):
            wait()

    def run(self, step: int, checkpoint: Path | None, pipeline: Callable[[], Any] | None,
            family: str) -> Mapping[str, Any]:
        """Validate at ``step``; returns the event written (``validation`` or ``validation_failed``)."""
        core = self.config.core
        try:
            context = ValidationContext(
                step=step, checkpoint_path=checkpoint, output_dir=self.output_dir / "validation",
                project_name=core.tracker_project_name, run_name=core.tracker_run_name, model_family=family,
                model_type=core.model_type, lora_type=core.lora_type, options=context_options(self.config),
                pipeline=pipeline() if pipeline is not None and self.needs_pipeline else None,
                on_event=self.events.forward,
            )
            result = self.method.run(context)
        except Exception as exc:  # validation problems are reported; training goes on
            return self.events.emit("validation_failed", step=step, method=self.name,
                                    error=f"{type(exc).__name__}: {exc}")
        images = [str(p) for p in result.images]
        if result.images:
            groups = result.groups or {core.validation_prompt or self.name: list(result.images)}
            self.tracking.log_images(step, {caption: list(paths) for caption, paths in groups.items()})
        return self.events.emit("validation", step=step, method=self.name, images=images, message=result.message)
