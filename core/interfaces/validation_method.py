"""The ValidationMethod interface."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs


@attrs.frozen
class ValidationContext:
    """What a validation method knows when it runs."""

    step: int
    checkpoint_path: Path | None
    output_dir: Path
    project_name: str
    run_name: str
    model_family: str
    model_type: str
    lora_type: str
    options: Mapping[str, Any] = attrs.field(factory=dict)
    #: The live pipeline (diffusers) for in-process methods; None for out-of-process ones.
    pipeline: Any = None
    #: Where a method reports events of work that ends later (e.g. a background command's outcome), as
    #: ``{"event": name, ...}`` dicts that go to the run's event stream; None when nobody listens.
    on_event: Callable[[dict[str, Any]], None] | None = attrs.field(default=None, eq=False)


@attrs.frozen
class ValidationResult:
    """Images produced (if any) and a short message for the event stream.

    ``groups`` optionally files the images under captions (e.g. the prompt's name) for trackers; when empty, every
    image is logged under the validation prompt.
    """

    images: Sequence[Path] = ()
    message: str = ""
    groups: Mapping[str, Sequence[Path]] = attrs.field(factory=dict)


class ValidationMethod(ABC):
    """Produces or triggers validation at a training step.

    Example::

        >>> class Note(ValidationMethod):
        ...     def run(self, context): return ValidationResult(message=f"step {context.step} ok")
        >>> Note().run(ValidationContext(step=5, checkpoint_path=None, output_dir=Path("."), project_name="p",
        ...            run_name="r", model_family="flux", model_type="lora", lora_type="standard")).message
        'step 5 ok'
    """

    @abstractmethod
    def run(self, context: ValidationContext) -> ValidationResult:
        """Validate at ``context.step``; raise with a clear message on failure (training goes on)."""
