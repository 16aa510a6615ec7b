"""The ``pipeline`` validation method: seeded images from the live diffusers pipeline for each named prompt."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from simpletuner.core.interfaces import ValidationContext, ValidationMethod, ValidationResult
from simpletuner.core.rendering import render_image
from simpletuner.plugins.validation.prompt_library import PromptEntry, resolve_prompts


class PipelineValidation(ValidationMethod):
    """Renders ``validation_prompt`` and every ``validation_prompts`` entry with ``context.pipeline``.

    Files are ``<name>-step<step>-seed<seed>-<W>x<H>.png`` under ``context.output_dir``; each PNG carries the
    prompt, seed, steps and guidance as text chunks (read by the model card and the web UI).
    """

    def __init__(self, options: Any) -> None:
        self._library = dict(options.validation_prompts)

    def run(self, context: ValidationContext) -> ValidationResult:
        """Generate one image per prompt and resolution; raises when there is no pipeline or no prompt."""
        if context.pipeline is None:
            raise ValueError("the pipeline validation method needs the live pipeline, but none was given")
        entries = resolve_prompts(context.options, self._library)
        if not entries:
            raise ValueError("nothing to validate: set validation_prompt or validation_prompts")
        context.output_dir.mkdir(parents=True, exist_ok=True)
        paths = [self._render(context, entry) for entry in entries]
        groups: dict[str, list[Path]] = {}
        for entry, path in zip(entries, paths, strict=True):
            groups.setdefault(entry.name, []).append(path)
        return ValidationResult(images=paths, message=f"{len(paths)} image(s) at step {context.step}",
                                groups=groups)

    def _render(self, context: ValidationContext, entry: PromptEntry) -> Path:
        from PIL.PngImagePlugin import PngInfo

        image = render_image(context.pipeline, entry.prompt, width=entry.width, height=entry.height,
                             steps=entry.steps, seed=entry.seed, guidance=entry.guidance,
                             negative_prompt=entry.negative_prompt)
        info = PngInfo()
        for key, value in (("name", entry.name), ("prompt", entry.prompt), ("seed", entry.seed),
                           ("steps", entry.steps), ("guidance", entry.guidance), ("step", context.step),
                           ("negative_prompt", entry.negative_prompt)):
            if value is not None:
                info.add_text(key, str(value))
        name = f"{entry.slug}-step{context.step:06d}-seed{entry.seed}-{entry.width}x{entry.height}.png"
        path = context.output_dir / name
        image.save(path, pnginfo=info)
        return path
