"""The Publisher interface."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from simpletuner.core.errors import SimpleTunerError
from simpletuner.core.specs import Usage


@attrs.frozen
class PublishRequest:
    """What to publish: the model files, the config used, validation images and model-card facts; ``usage`` is the
    family's (how its outputs load into diffusers)."""

    files: Sequence[Path]
    config: Mapping[str, Any]
    model_family: str
    base_model: str
    model_type: str
    validation_images: Sequence[Path] = ()
    step: int = 0
    usage: Usage = attrs.field(factory=Usage)


@attrs.frozen
class TokenAccount:
    """Who a user's token publishes as, as the service answered (never the token itself)."""

    name: str
    role: str | None = None


class TokenRefused(SimpleTunerError):
    """A token a publisher cannot publish with, or a service that could not check it; ``status`` is the HTTP
    status that fits (400 malformed, 422 refused or read-only, 502/503/504 service trouble)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class Publisher(ABC):
    """Ships the final output (and optionally checkpoints) somewhere and writes a model card.

    Example::

        >>> import tempfile
        >>> class PrintPublisher(Publisher):
        ...     def publish(self, request): return "memory://" + ",".join(p.name for p in request.files)
        >>> PrintPublisher().publish(PublishRequest(files=[Path("lora.safetensors")], config={},
        ...                          model_family="flux", base_model="b", model_type="lora"))
        'memory://lora.safetensors'
    """

    #: Whether :meth:`publish_checkpoint` is implemented.
    supports_checkpoints: bool = False

    @abstractmethod
    def publish(self, request: PublishRequest) -> str:
        """Publish the final model with its model card; return the remote location (URL or path)."""

    def publish_checkpoint(self, checkpoint_dir: Path, step: int, config: Mapping[str, Any] | None = None) -> str:
        """Publish one checkpoint folder; return its remote location. Only if :attr:`supports_checkpoints`.

        ``config`` is the run's config (as in :attr:`PublishRequest.config`), for publishers that need a setting
        of the run such as the repository name.
        """
        raise NotImplementedError(f"{type(self).__name__} does not publish checkpoints")
