"""The code that uses a trained model with diffusers, as model cards and the web UI's job page show it.

The family's :class:`~simpletuner.core.specs.Usage` says which pipeline and which loader each kind of output needs;
the run's settings give the example call (its validation prompt, steps, guidance, size and seed), so the code
renders what validation rendered.

>>> from simpletuner.core.specs import Usage
>>> print(usage_code(Usage(pipeline="diffusers:FluxPipeline"), "lora", base_model="black-forest-labs/FLUX.1-dev",
...                  source="me/my-lora", settings={"validation_prompt": "a red cat",
...                  "validation_num_inference_steps": 28, "validation_resolution": "1024x768"}))
import torch
from diffusers import FluxPipeline
<BLANKLINE>
pipeline = FluxPipeline.from_pretrained("black-forest-labs/FLUX.1-dev", dtype=torch.bfloat16)
pipeline.load_lora_weights("me/my-lora")
pipeline.to("cuda")
image = pipeline(prompt="a red cat", num_inference_steps=28, width=1024, height=768).images[0]
image.save("output.png")
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from simpletuner.core.specs import Usage

#: The kinds of output a run writes: a PEFT LoRA file, a LyCORIS file, or the fully trained component's folder.
OUTPUT_KINDS = ("lora", "lycoris", "full")
#: The first size of ``validation_resolution`` (``1024``, ``1024x768`` or a list such as ``1024x768,512``).
_SIZE = re.compile(r"^\s*(\d+)(?:x(\d+))?\s*(?:,|$)")


def output_kind(model_type: str, lora_type: str | None) -> str:
    """The kind of output a run of ``model_type`` (and ``lora_type``) writes, one of :data:`OUTPUT_KINDS`."""
    if model_type != "lora":
        return "full"
    return "lycoris" if lora_type == "lycoris" else "lora"


def usage_code(usage: Usage, kind: str, *, base_model: str, source: str, settings: Mapping[str, Any],
               component: str = "transformer") -> str:
    """Python code that loads an output of ``kind`` from ``source`` (a Hub repository id or a folder) onto
    ``base_model`` and renders one image on a CUDA device.

    ``settings`` are the run's config values (flat keys); ``component`` is the folder and pipeline argument of a
    fully trained component.
    """
    if kind not in OUTPUT_KINDS:
        raise ValueError(f"unknown output kind {kind!r}; expected one of {', '.join(OUTPUT_KINDS)}")
    imports: dict[str, set[str]] = {}

    def name_of(path: str) -> str:
        module, _, name = path.partition(":")
        imports.setdefault(module, set()).add(name)
        return name

    pipeline = name_of(usage.pipeline)
    base, where = _quote(base_model), _quote(source)
    if kind == "full":
        load = [f"{component} = {name_of(usage.full)}.from_pretrained({where}, subfolder={_quote(component)}, "
                "dtype=torch.bfloat16)",
                f"pipeline = {pipeline}.from_pretrained({base}, {component}={component}, dtype=torch.bfloat16)"]
    else:
        loader = usage.lycoris if kind == "lycoris" else usage.lora
        load = [f"pipeline = {pipeline}.from_pretrained({base}, dtype=torch.bfloat16)",
                f"pipeline.load_lora_weights({where})" if loader is None else f"{name_of(loader)}(pipeline, {where})"]
    header = ["import torch", *(f"from {module} import {', '.join(sorted(names))}"
                                for module, names in sorted(imports.items()))]
    return "\n".join([*header, "", *load, 'pipeline.to("cuda")', f"image = pipeline({_call(settings)}).images[0]",
                      'image.save("output.png")'])


def _call(settings: Mapping[str, Any]) -> str:
    """The arguments of the example call: the validation prompt, steps, guidance, size and seed of the run."""
    # the prompt by name: some pipelines (FLUX.2 [klein]) take an input image as their first argument
    arguments = ["prompt=" + _quote(str(settings.get("validation_prompt") or "a photo")),
                 f"num_inference_steps={int(settings.get('validation_num_inference_steps') or 20)}"]
    guidance = settings.get("validation_guidance")
    if guidance is not None:
        arguments.append(f"guidance_scale={float(guidance)}")
    size = _SIZE.match(str(settings.get("validation_resolution") or ""))
    if size:
        arguments.append(f"width={int(size.group(1))}, height={int(size.group(2) or size.group(1))}")
    seed = settings.get("validation_seed")
    if isinstance(seed, int) and not isinstance(seed, bool):
        arguments.append(f"generator=torch.manual_seed({seed})")
    return ", ".join(arguments)


def _quote(text: str) -> str:
    """A Python string literal of ``text`` (JSON's double-quoted form is one)."""
    return json.dumps(text)
