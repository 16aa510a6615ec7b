"""Trying a trained model: images from prompts with the run's adapter at a chosen strength, each beside the base
model's image of the same prompt and seed, kept in the run's folder (``tries/<stamp>/``).

The adapter is attached and loaded exactly as training and resuming do (the family's targets, the run's LyCORIS
config), so anything a run can train can be tried. The base image of a LoRA or LyCORIS run comes from the same
model at strength 0 (the adapter then adds nothing); a full-rank run's base image comes from the base weights.
"""

from __future__ import annotations

import copy
import json
import re
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from simpletuner.core.config.loading import LoadedEnvironment
from simpletuner.core.errors import SimpleTunerError
from simpletuner.core.events import EVENTS_FILE, EventWriter, Listener
from simpletuner.core.plugins import Registry
from simpletuner.core.rendering import parse_resolution, render_image
from simpletuner.core.workspace import Workspace

TRIES_DIR = "tries"
MANIFEST_FILE = "try.json"
MAX_PROMPTS = 8
MAX_PROMPT_LENGTH = 2000
_CHECKPOINT = re.compile(r"^checkpoint-\d+$")


class TryError(SimpleTunerError):
    """A try that cannot run; the message names the problem and the fix."""


@attrs.frozen
class TryRequest:
    """What to render: up to :data:`MAX_PROMPTS` prompts, the adapter's strength (0 = the base model, 1 = as
    trained), the seed and sampler steps (the environment's validation settings when unset), and a checkpoint of
    the run (``checkpoint-<step>``) instead of its final model."""

    prompts: tuple[str, ...]
    strength: float = 1.0
    seed: int | None = None
    steps: int | None = None
    checkpoint: str | None = None

    @classmethod
    def from_json(cls, data: Any) -> TryRequest:
        """Check a request's JSON object; raises :class:`TryError` naming every problem."""
        if not isinstance(data, Mapping):
            raise TryError("expected a JSON object with prompts (a list of strings)")
        problems: list[str] = []
        unknown = sorted(set(data) - {f.name for f in attrs.fields(cls)})
        if unknown:
            problems.append(f"unknown keys {unknown}; known: prompts, strength, seed, steps, checkpoint")
        prompts = data.get("prompts")
        if isinstance(prompts, str):
            prompts = [prompts]
        if not isinstance(prompts, list) or not prompts or not all(isinstance(p, str) and p.strip()
                                                                    for p in prompts):
            problems.append("prompts: give a list of 1 to 8 non-empty strings")
            prompts = []
        elif len(prompts) > MAX_PROMPTS or any(len(p) > MAX_PROMPT_LENGTH for p in prompts):
            problems.append(f"prompts: at most {MAX_PROMPTS} prompts of at most {MAX_PROMPT_LENGTH} characters")
        strength = data.get("strength", 1.0)
        if isinstance(strength, bool) or not isinstance(strength, (int, float)) or not 0 <= strength <= 2:
            problems.append(f"strength: a number from 0 (the base model) to 2, got {strength!r}")
        for key, low, high in (("seed", 0, 2**63 - 1), ("steps", 1, 200)):
            value = data.get(key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                      or not low <= value <= high):
                problems.append(f"{key}: an integer from {low} to {high}, got {value!r}")
        checkpoint = data.get("checkpoint")
        if checkpoint is not None and (not isinstance(checkpoint, str) or not _CHECKPOINT.match(checkpoint)):
            problems.append(f"checkpoint: a checkpoint folder name such as checkpoint-500, got {checkpoint!r}")
        if problems:
            raise TryError("; ".join(problems))
        return cls(prompts=tuple(p.strip() for p in prompts), strength=float(strength), seed=data.get("seed"),
                   steps=data.get("steps"), checkpoint=checkpoint)

    def to_json(self) -> dict[str, Any]:
        """JSON-ready form (what :meth:`from_json` reads)."""
        return {**attrs.asdict(self), "prompts": list(self.prompts)}


def trained_weights(run_dir: Path, core: Any, component: str, checkpoint: str | None) -> Path:
    """The weights a try loads: the run's final model, or ``checkpoint``'s weights. Raises :class:`TryError`
    when the run has not written them."""
    from simpletuner.core.training.outputs import LORA_FILE
    from simpletuner.core.training.saving import FULL_WEIGHTS_FILE

    folder = run_dir / checkpoint if checkpoint else run_dir
    if core.model_type == "full":
        path = folder / (FULL_WEIGHTS_FILE if checkpoint else component)
    else:
        path = folder / LORA_FILE
    if not path.exists():
        what = f"checkpoint {checkpoint}" if checkpoint else "a final model"
        raise TryError(f"the run in {run_dir} has no {what} ({path.name} is missing); try a finished run or one "
                       "of its checkpoints")
    return path


def new_try_folder(run_dir: Path) -> Path:
    """A new, empty folder for one try under the run's ``tries`` folder."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    for attempt in range(1000):
        folder = run_dir / TRIES_DIR / (stamp if attempt == 0 else f"{stamp}-{attempt}")
        try:
            folder.mkdir(parents=True)
            return folder
        except FileExistsError:
            continue
    raise TryError(f"cannot make a new folder under {run_dir / TRIES_DIR}")


def try_model(loaded: LoadedEnvironment, workspace: Workspace, registry: Registry, run_dir: Path,
              request: TryRequest, folder: Path, listeners: list[Listener] | None = None) -> dict[str, Any]:
    """Render ``request`` with the run's trained model and the base model into ``folder``; returns the manifest
    written there as ``try.json`` (the request, the weights used and each prompt's two image files). Progress goes
    to ``events.jsonl`` in ``folder``."""
    events = EventWriter(folder / EVENTS_FILE, listeners)
    try:
        manifest = _render_all(loaded, workspace, registry, run_dir, request, folder, events)
        (folder / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2))
        events.emit("finished", step=None, output=str(folder / MANIFEST_FILE), images=len(manifest["images"]))
        return manifest
    except BaseException as exc:
        events.failed(exc, None)
        raise
    finally:
        events.close()


def _render_all(loaded: LoadedEnvironment, workspace: Workspace, registry: Registry, run_dir: Path,
                request: TryRequest, folder: Path, events: EventWriter) -> dict[str, Any]:
    import torch

    from simpletuner.core.training.resolve import resolve_run

    core = loaded.config.core
    resolved = resolve_run(loaded, workspace, registry)
    family, component = resolved.family, resolved.family.trained_component
    weights = trained_weights(run_dir, core, component, request.checkpoint)
    if core.model_type == "full" and request.strength != 1.0:
        raise TryError("strength applies to LoRA and LyCORIS runs; a full-rank run's model is tried as trained "
                       "(strength 1)")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    sources = {name: resolved.vae_source if name == "vae" else resolved.pretrained for name in family.components}
    components = {name: family.load_components(source, dtype=dtype, device=device, names=[name])[name]
                  for name, source in sources.items()}
    base = components[component]
    trained = _trained_model(base, family, core, loaded, run_dir, weights, dtype, device)
    width, height = parse_resolution(core.validation_resolution, "validation_resolution")[0]
    seed = core.validation_seed if request.seed is None else request.seed
    steps = request.steps or core.validation_num_inference_steps
    settings = {"width": width, "height": height, "steps": steps, "seed": seed,
                "guidance": core.validation_guidance, "negative_prompt": core.validation_negative_prompt}
    adapter = core.model_type == "lora"  # the base image is the same model with its adapter at strength 0
    images: list[dict[str, str]] = []
    done, total = 0, 2 * len(request.prompts)
    for index, prompt in enumerate(request.prompts):
        pair: dict[str, str] = {"prompt": prompt}
        for side in ("base", "trained"):
            model = trained if adapter or side == "trained" else base
            if adapter:
                _set_strength(trained, 0.0 if side == "base" else request.strength)
            pipeline = family.validation_pipeline({**components, component: model})
            name = f"{index:02d}-{side}.png"
            render_image(pipeline, prompt, **settings).save(folder / name)
            pair[side] = name
            done += 1
            events.emit("try_progress", done=done, total=total)
        images.append(pair)
    return {"request": request.to_json(), "weights": str(weights), "run_dir": str(run_dir),
            "settings": settings, "images": images}


def _trained_model(base: Any, family: Any, core: Any, loaded: LoadedEnvironment, run_dir: Path, weights: Path,
                   dtype: Any, device: Any) -> Any:
    """The trained component: the base model with the run's adapter loaded onto it, or the full-rank weights."""
    from safetensors.torch import load_file

    from simpletuner.core.training.adapter import attach_adapter, load_trained_state_dict
    from simpletuner.core.training.lycoris import LYCORIS_CONFIG_FILE
    from simpletuner.core.training.outputs import read_lora

    component = family.trained_component
    if core.model_type == "full":
        if weights.is_dir():  # the final model: a diffusers folder named after the component
            return family.load_components(str(weights.parent), dtype=dtype, device=device,
                                          names=[component])[component]
        model = copy.deepcopy(base)
        model.load_state_dict(load_file(str(weights), device=str(device)), strict=True)
        return model
    lycoris = loaded.lycoris_config
    saved_config = run_dir / LYCORIS_CONFIG_FILE
    if core.lora_type == "lycoris" and saved_config.is_file():
        lycoris = json.loads(saved_config.read_text())  # the network the run trained, even if edited since
    try:
        attach_adapter(base, family, core, lycoris)
        load_trained_state_dict(base, read_lora(weights, component)[0], core)
    except ValueError as exc:
        raise TryError(f"{weights.name} does not fit the environment's adapter settings ({exc}); the "
                       "environment's lora_rank, targets or LyCORIS config changed since the run") from None
    base.to(device=device)
    return base


def _set_strength(model: Any, strength: float) -> None:
    """Scale the adapter of ``model`` (a PEFT LoRA or a LyCORIS network); nothing for a full-rank model."""
    from simpletuner.core.training.adapter import ADAPTER_NAME
    from simpletuner.core.training.lycoris import lycoris_network

    network = lycoris_network(model)
    if network is not None:
        network.set_multiplier(strength)
        return
    for module in model.modules():
        if hasattr(module, "set_scale") and hasattr(module, "scaling"):
            module.set_scale(ADAPTER_NAME, strength)
