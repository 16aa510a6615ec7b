"""Publishing into a folder on this machine, in the same layout as a Hub repository."""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from simpletuner.core.atomic import atomic_copy_tree, atomic_remove_tree, atomic_write_bytes
from simpletuner.core.interfaces import Publisher, PublishRequest
from simpletuner.publishers.layout import generated_files, image_files, model_files
from simpletuner.publishers.model_card import CardSettings


class LocalPublisher(Publisher):
    """Writes the publication to ``local_publish_dir`` (relative paths are under the run's ``output_dir``)."""

    supports_checkpoints = True

    def __init__(self, options: Any) -> None:
        self._folder = options.local_publish_dir

    def target(self, config: Mapping[str, Any]) -> Path:
        """The folder a run publishes to."""
        folder = Path(self._folder).expanduser()
        return folder if folder.is_absolute() else Path(str(config.get("output_dir") or ".")) / folder

    def publish(self, request: PublishRequest) -> str:
        """Copy the model files, images, config and model card (whose code loads the model from this folder);
        returns the folder."""
        target = self.target(request.config)
        files = model_files(request) + list(image_files(request).items())
        for source, inside in files:
            destination = target / inside
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination)
        for inside, data in generated_files(request, CardSettings(source=str(target))).items():
            atomic_write_bytes(target / inside, data)
        return str(target)

    def publish_checkpoint(self, checkpoint_dir: Path, step: int, config: Mapping[str, Any] | None = None) -> str:
        """Copy a checkpoint folder to ``checkpoints/<name>`` (replacing an older copy of the same step)."""
        destination = self.target(config or {}) / "checkpoints" / Path(checkpoint_dir).name
        destination.parent.mkdir(parents=True, exist_ok=True)
        if destination.exists():
            atomic_remove_tree(destination)
        atomic_copy_tree(Path(checkpoint_dir), destination)
        return str(destination)
