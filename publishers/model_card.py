"""The model card (README.md with YAML front matter) shared by the publishers.

The front matter carries what the Hub indexes: base model, license (by family and flavour unless configured),
tags, pipeline tag, library and widget images with their prompts. The body states how the model was trained and
holds the code that loads the model into the family's diffusers pipeline (:mod:`simpletuner.core.usage`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from simpletuner.core.interfaces import PublishRequest
from simpletuner.core.usage import output_kind, usage_code

#: ``(license, license_name, license_link)`` of known base models, by family and then flavour (``*`` = any).
FAMILY_LICENSES: Mapping[str, Mapping[str, tuple[str, str | None, str | None]]] = {
    "flux": {
        "schnell": ("apache-2.0", None, None),
        "*": ("other", "flux-1-dev-non-commercial-license",
              "https://huggingface.co/black-forest-labs/FLUX.1-dev/blob/main/LICENSE.md"),
    },
    "pixart": {"*": ("openrail++", None, None)},
}
_SECRET_HINTS = ("token", "password", "secret", "api_key")
_WHAT = {"lora": "LoRA", "lycoris": "LyCORIS adapter", "full": "full fine-tune"}


@attrs.frozen
class CardSettings:
    """What a publisher adds to the request's facts; ``source`` is where the usage code loads the model from
    (``repo_id`` when unset)."""

    repo_id: str | None = None
    source: str | None = None
    license: str | None = None
    tags: Sequence[str] = ()
    note: str | None = None
    safe_for_work: bool = True


def license_for(family: str, flavour: str | None) -> tuple[str, str | None, str | None]:
    """The license triple of a family's flavour; ``other`` for unknown families."""
    by_flavour = FAMILY_LICENSES.get(family, {})
    return by_flavour.get(flavour or "", by_flavour.get("*", ("other", None, None)))


def public_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """The run's config without values whose key suggests a credential (never published)."""
    return {k: v for k, v in config.items() if not any(hint in k.lower() for hint in _SECRET_HINTS)}


def image_prompt(path: Path) -> str:
    """The prompt stored in a validation PNG's text chunks, else the file's stem."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            text = getattr(image, "text", {}) or {}
            return str(text.get("prompt") or path.stem)
    except OSError:
        return path.stem


def render_model_card(request: PublishRequest, settings: CardSettings, image_paths: Mapping[Path, str]) -> str:
    """The README.md text: YAML front matter then the body.

    ``image_paths`` maps each validation image to its path inside the published folder or repository.
    """
    from huggingface_hub import ModelCardData

    config = request.config
    flavour = config.get("model_flavour")
    license_id, license_name, license_link = (
        (settings.license, None, None) if settings.license else license_for(request.model_family, flavour)
    )
    tags = ["text-to-image", "diffusers", "simpletuner", request.model_family]
    if request.model_type == "lora":
        tags += ["lora", "template:sd-lora"] + (["lycoris"] if config.get("lora_type") == "lycoris" else [])
    else:
        tags.append("full-finetune")
    if not settings.safe_for_work:
        tags.append("not-for-all-audiences")
    tags += [t for t in settings.tags if t not in tags]
    widget = [{"text": image_prompt(path), "output": {"url": inside}} for path, inside in image_paths.items()]
    data = ModelCardData(
        base_model=request.base_model, license=license_id, license_name=license_name, license_link=license_link,
        tags=tags, pipeline_tag="text-to-image", library_name="diffusers", widget=widget or None,
    )
    title = settings.repo_id.split("/")[-1] if settings.repo_id else config.get("tracker_run_name", "model")
    body = [
        f"# {title}",
        "",
        f"A {_WHAT[output_kind(request.model_type, config.get('lora_type'))]} of "
        f"[{request.base_model}](https://huggingface.co/{request.base_model}) ({request.model_family}) "
        "trained with SimpleTuner.",
    ]
    if settings.note:
        body += ["", settings.note]
    body += ["", "## Training", "", "| setting | value |", "| --- | --- |"]
    facts = {"steps": request.step, **{k: config.get(k) for k in (
        "model_flavour", "lora_type", "lora_rank", "lora_alpha", "learning_rate", "lr_scheduler", "optimizer",
        "train_batch_size", "gradient_accumulation_steps", "resolution", "mixed_precision",
        "base_model_precision") if config.get(k) is not None}}
    if request.model_type != "lora":
        facts = {k: v for k, v in facts.items() if not k.startswith("lora")}
    body += [f"| {key} | {value} |" for key, value in facts.items()]
    if image_paths:
        body += ["", "## Validation images", ""]
        body += [f"![{image_prompt(path)}]({inside})" for path, inside in image_paths.items()]
    body += ["", "## Usage", "", "```python", _usage(request, settings), "```", ""]
    return f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(body)


def _usage(request: PublishRequest, settings: CardSettings) -> str:
    kind = output_kind(request.model_type, request.config.get("lora_type"))
    # a full model's folder keeps the trained component's name (transformer/)
    component = Path(request.files[0]).name if kind == "full" and request.files else "transformer"
    return usage_code(request.usage, kind, base_model=request.base_model,
                      source=settings.source or settings.repo_id or "path/to/this/folder", settings=request.config,
                      component=component)
