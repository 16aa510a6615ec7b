"""``simpletuner demo``: a working LoRA run from nothing — a tiny random-weight pipeline of a family (Flux by
default; ``--family`` takes any installed family whose spec declares a tiny model), generated captioned images and an
environment ``demo-<family>`` — trained on the CPU in a few minutes."""

from __future__ import annotations

import argparse
import random
from pathlib import Path
from typing import Any

from simpletuner.core.atomic import atomic_write_json
from simpletuner.core.cli.context import CliContext
from simpletuner.core.environments import validate_environment_name
from simpletuner.core.errors import SimpleTunerError
from simpletuner.core.plugins import Registry
from simpletuner.core.specs import TinyModel, normalize_name
from simpletuner.core.workspace import Workspace

DEMO_ENV = "demo-flux"  # the default (Flux) demo environment
_COLOURS = {"red": (220, 40, 40), "green": (40, 180, 60), "blue": (40, 70, 220), "yellow": (235, 215, 40),
            "purple": (140, 50, 180), "orange": (240, 140, 30), "white": (245, 245, 245), "black": (15, 15, 15)}
_SHAPES = ("circle", "square")
#: (width, height) of the demo images: square, landscape and portrait buckets at 128 px.
_SIZES = ((128, 128), (192, 128), (128, 192))


def demo_env(family: str = "flux") -> str:
    """The name of a family's demo environment."""
    return f"demo-{family}"


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Register the ``demo`` command."""
    demo = commands.add_parser(
        "demo", help="build and train a tiny demo model (Flux, Sana or PixArt) on this machine",
        description="Create a tiny random-weight pipeline of a model family, generated images and the environment "
                    "'demo-<family>' in the workspace, then train a LoRA on it (a few minutes on a CPU).",
    )
    demo.add_argument("--family", default="flux",
                      help="model family of the demo: any installed family with a tiny model (default flux)")
    demo.add_argument("--steps", type=int, default=60, help="training steps (default 60)")
    demo.add_argument("--name", help="name of the demo environment (default demo-<family>)")
    demo.add_argument("--no-train", action="store_true", help="only create the demo environment")
    demo.set_defaults(handler=demo_command)


def make_demo_images(folder: Path, count: int, seed: int = 0) -> list[Path]:
    """Write ``count`` images of a coloured shape on a coloured background, each with a ``.txt`` caption."""
    from PIL import Image, ImageDraw

    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for index in range(count):
        shape, fg, bg = rng.choice(_SHAPES), *rng.sample(sorted(_COLOURS), 2)
        width, height = _SIZES[index % len(_SIZES)]
        image = Image.new("RGB", (width, height), _COLOURS[bg])
        draw = ImageDraw.Draw(image)
        size = rng.randint(min(width, height) // 3, min(width, height) * 2 // 3)
        left, top = rng.randint(0, width - size), rng.randint(0, height - size)
        box = (left, top, left + size, top + size)
        (draw.ellipse if shape == "circle" else draw.rectangle)(box, fill=_COLOURS[fg])
        path = folder / f"demo-{index:03d}.png"
        image.save(path)
        path.with_suffix(".txt").write_text(f"a {fg} {shape} on a {bg} background", encoding="utf-8")
        written.append(path)
    return written


def demo_families(registry: Registry) -> dict[str, TinyModel]:
    """The installed families that offer a tiny model, by name."""
    return {name: spec.tiny for name, spec in registry.model_families().items() if spec.tiny is not None}


def demo_config(model_dir: Path, steps: int, validate: bool, family: str, tiny: TinyModel,
                env: str | None = None) -> dict[str, Any]:
    """The demo environment's config.json (environment ``env``, ``demo-<family>`` by default)."""
    env = env or demo_env(family)
    config: dict[str, Any] = {
        "model_family": family, "pretrained_model_name_or_path": str(model_dir),
        "model_type": "lora", "lora_rank": 8, "lora_dropout": 0.0, "learning_rate": 1e-3,
        "max_train_steps": steps, "num_train_epochs": 0, "train_batch_size": 2, "seed": 42,
        "resolution": 128, "resolution_type": "pixel", "mixed_precision": "no", "max_grad_norm": 1.0,
        "checkpointing_steps": max(1, steps // 3), "checkpoints_total_limit": 2,
        "output_dir": f"output/{env}", "report_to": "none", "tracker_run_name": env,
        **tiny.settings,
    }
    if validate:
        config.update({"validation_prompt": "a red circle on a blue background", "validation_steps": steps // 2,
                       "validation_resolution": "128", "validation_num_inference_steps": 4})
    return config


def create_demo(workspace: Workspace, registry: Registry, *, steps: int = 60, images: int = 12,
                family: str = "flux", name: str | None = None) -> Path:
    """Create the family's tiny pipeline, the images and the environment ``name`` (``demo-<family>`` by default);
    returns the environment folder."""
    tiny = demo_families(registry).get(normalize_name(family))
    if tiny is None:
        choices = ", ".join(demo_families(registry)) or "none installed"
        raise SimpleTunerError(f"no tiny model of the family {family!r} for a demo; choose one of {choices}")
    family = normalize_name(family)
    model_dir = workspace.root / "models" / f"tiny-{family}"
    if not (model_dir / "model_index.json").is_file():
        tiny.build(model_dir)
    env = validate_environment_name(name) if name else demo_env(family)
    data_dir = workspace.datasets_dir / env
    make_demo_images(data_dir, images)
    env_dir = workspace.configs_dir / env
    validate = "pipeline" in registry.validation_methods()
    atomic_write_json(env_dir / "config.json", demo_config(model_dir, steps, validate, family, tiny, env))
    atomic_write_json(env_dir / "multidatabackend.json", [
        {"id": "shapes", "type": "local", "instance_data_dir": str(data_dir), "caption_strategy": "textfile",
         "resolution": 128, "resolution_type": "pixel", "minimum_image_size": 128,
         "cache_dir_vae": f"cache/{env}/vae"},
        {"id": "text-embeds", "type": "local", "dataset_type": "text_embeds", "default": True,
         "cache_dir": f"cache/{env}/text"},
    ])
    return env_dir


def demo_command(args: argparse.Namespace, context: CliContext) -> int:
    """Create the demo and train it."""
    if args.steps < 1:
        print("error: --steps must be at least 1")
        return 1
    family = getattr(args, "family", "flux")
    env_dir = create_demo(context.workspace, context.registry, steps=args.steps, family=family,
                          name=getattr(args, "name", None))
    env = env_dir.name
    print(f"Created the environment {env!r} at {env_dir}")
    if args.no_train:
        print(f"Train it with: simpletuner train --env {env}")
        return 0
    from simpletuner.core.cli.train_commands import train_command

    return train_command(argparse.Namespace(env=env, config=None, num_processes=1, run_dir=None), context)
