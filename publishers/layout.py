"""Which files a publication holds and where: the same layout in a Hub repository and in a local folder.

``<model files>`` at the top (a folder such as ``transformer/`` keeps its name), ``simpletuner_config.json``
(the run's config, credentials left out), ``images/<validation image>`` and ``README.md`` (the model card).
"""

from __future__ import annotations

import json
from pathlib import Path

from simpletuner.core.interfaces import PublishRequest
from simpletuner.publishers.model_card import CardSettings, public_config, render_model_card

CONFIG_FILE = "simpletuner_config.json"
IMAGES_FOLDER = "images"
CARD_FILE = "README.md"


def model_files(request: PublishRequest) -> list[tuple[Path, str]]:
    """``(file on disk, path in the publication)`` of every model file; folders are expanded, in sorted order."""
    entries: list[tuple[Path, str]] = []
    for item in request.files:
        item = Path(item)
        if item.is_dir():
            entries += [(f, f"{item.name}/{f.relative_to(item).as_posix()}") for f in sorted(item.rglob("*"))
                        if f.is_file()]
        elif item.is_file():
            entries.append((item, item.name))
        else:
            raise FileNotFoundError(f"cannot publish {item}: it does not exist")
    return entries


def image_files(request: PublishRequest) -> dict[Path, str]:
    """Validation images and their place under ``images/``."""
    return {Path(p): f"{IMAGES_FOLDER}/{Path(p).name}" for p in request.validation_images if Path(p).is_file()}


def generated_files(request: PublishRequest, settings: CardSettings) -> dict[str, bytes]:
    """The files written for the publication: the config and the model card."""
    config = json.dumps(public_config(request.config), indent=2, sort_keys=True, default=str) + "\n"
    card = render_model_card(request, settings, image_files(request))
    return {CONFIG_FILE: config.encode("utf-8"), CARD_FILE: card.encode("utf-8")}


def checkpoint_files(checkpoint_dir: Path) -> list[tuple[Path, str]]:
    """Files of a checkpoint folder under ``checkpoints/<folder name>/``."""
    base = f"checkpoints/{checkpoint_dir.name}"
    return [(f, f"{base}/{f.relative_to(checkpoint_dir).as_posix()}") for f in sorted(checkpoint_dir.rglob("*"))
            if f.is_file()]
