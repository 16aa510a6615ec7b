"""``simpletuner presets``: a family's memory presets, and applying one to an environment."""

from __future__ import annotations

import argparse

from simpletuner.core.cli.context import CliContext, print_json
from simpletuner.core.config import build_schema
from simpletuner.core.errors import WorkspaceError
from simpletuner.core.presets import apply_memory_preset


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Register the ``presets`` command."""
    presets = commands.add_parser(
        "presets", help="list or apply a model family's memory presets",
        description="List a family's light / balanced / aggressive memory presets with the settings each changes "
                    "and its trade-off, or apply one to an environment's config.json.",
    )
    presets.add_argument("--family", required=True, help="model family, e.g. flux")
    presets.add_argument("--json", action="store_true", help="print JSON")
    presets.add_argument("--apply", metavar="PRESET", help="preset to write into the environment")
    presets.add_argument("--env", metavar="NAME", help="environment to change (with --apply)")
    presets.set_defaults(handler=run_presets)


def run_presets(args: argparse.Namespace, context: CliContext) -> int:
    """List presets, or apply one."""
    family = context.registry.model_family(args.family)
    if args.apply:
        if not args.env:
            raise WorkspaceError("--apply needs --env NAME: the environment to change")
        env = context.store.get(args.env)
        changes = apply_memory_preset(env, family, args.apply, build_schema(context.registry))
        if not changes:
            print(f"{args.env!r} already matches the {args.apply!r} preset; nothing changed.")
        for key, (old, new) in changes.items():
            print(f"{key}: {old!r} -> {new!r}")
        return 0
    if args.env:
        raise WorkspaceError("--env is only used with --apply PRESET")
    if args.json:
        print_json([{"name": p.name, "tradeoff": p.tradeoff, "settings": dict(p.settings)}
                    for p in family.memory_presets])
        return 0
    if not family.memory_presets:
        print(f"{family.name} declares no memory presets.")
    for preset in family.memory_presets:
        settings = ", ".join(f"{k}={v!r}" for k, v in preset.settings.items())
        print(f"{preset.name}: {preset.tradeoff}\n    {settings}")
    return 0
