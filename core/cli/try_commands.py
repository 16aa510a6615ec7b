"""``simpletuner try``: render prompts with a run's trained model beside the base model's images."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from simpletuner.core.cli.context import CliContext
from simpletuner.core.cli.train_commands import load_checked
from simpletuner.core.errors import SimpleTunerError


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Register the ``try`` command."""
    command = commands.add_parser(
        "try", help="render prompts with a run's trained model beside the base model",
        description="Render each prompt with the run's final model (or a checkpoint) at the given strength and with "
                    "the base model, same seed and settings (the environment's validation size, steps and "
                    "guidance). The images and try.json go into a new folder under the run folder's tries/.",
    )
    command.add_argument("--env", metavar="NAME", required=True, help="the environment the run trained")
    command.add_argument("--run-dir", metavar="PATH", type=Path, required=True, help="the run folder")
    command.add_argument("--prompt", action="append", default=[], metavar="TEXT", help="a prompt (repeatable)")
    command.add_argument("--request", metavar="PATH", type=Path,
                         help="a JSON file with prompts, strength, seed, steps and checkpoint instead of the flags")
    command.add_argument("--strength", type=float, default=1.0, help="adapter strength: 0 (base) to 2; default 1")
    command.add_argument("--seed", type=int, default=None, help="the environment's validation_seed if unset")
    command.add_argument("--steps", type=int, default=None,
                         help="sampler steps; the environment's validation_num_inference_steps if unset")
    command.add_argument("--checkpoint", metavar="checkpoint-N", default=None,
                         help="a checkpoint folder of the run instead of its final model")
    command.add_argument("--out", metavar="PATH", type=Path, default=None,
                         help="an empty folder to write into; a new one under RUN/tries/ if unset")
    command.set_defaults(handler=try_command)


def try_command(args: argparse.Namespace, context: CliContext) -> int:
    """Check the request and the environment, then render."""
    from simpletuner.core.trying import TryRequest, new_try_folder, try_model

    if args.request is not None:
        try:
            data = json.loads(args.request.read_text())
        except (OSError, ValueError) as exc:
            raise SimpleTunerError(f"--request {args.request}: not a readable JSON file ({exc})") from None
    else:
        data = {"prompts": args.prompt, "strength": args.strength, "seed": args.seed, "steps": args.steps,
                "checkpoint": args.checkpoint}
    request = TryRequest.from_json(data)
    run_dir = args.run_dir.expanduser().resolve()
    if not run_dir.is_dir():
        raise SimpleTunerError(f"--run-dir {args.run_dir}: not a folder; give a run folder of the environment")
    loaded = load_checked(context, context.store, args.env)
    if loaded is None:
        return 1
    if args.out is not None:
        folder = args.out.expanduser().resolve()
        folder.mkdir(parents=True, exist_ok=True)
        if any(folder.iterdir()):
            raise SimpleTunerError(f"--out {args.out}: not empty; give an empty or new folder")
    else:
        folder = new_try_folder(run_dir)
    manifest = try_model(loaded, context.workspace, context.registry, run_dir, request, folder)
    for pair in manifest["images"]:
        print(f"{pair['prompt']!r}: base {folder / pair['base']}, trained {folder / pair['trained']}")
    print(f"Try folder: {folder}")
    return 0
