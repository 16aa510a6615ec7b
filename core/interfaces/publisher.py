"""The Publisher interface."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs


@attrs.frozen
class PublishRequest:
    """What to publish: the model files, the config used, validation images and model-card facts."""

    files: Sequence[Path]
    config: Mapping[str, Any]
    model_family: str
    base_model: str
    model_type: str
    validation_images: Sequence[Path] = ()
    step: int = 0


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
