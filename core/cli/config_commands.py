"""``simpletuner config check``: validate an environment and its datasets file."""

from __future__ import annotations

import argparse
import sys

from simpletuner.core.cli.context import CliContext
from simpletuner.core.config import load_environment
from simpletuner.core.datasets.storage import DatasetStorage
from simpletuner.core.errors import ConfigError


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Register the ``config`` command group."""
    config = commands.add_parser("config", help="check configurations", description="Work with configurations.")
    sub = config.add_subparsers(dest="config_command", metavar="COMMAND", required=True)
    check = sub.add_parser(
        "check", help="validate an environment",
        description="Validate an environment's config.json, datasets file and LyCORIS config against the "
                    "installed plugins, and that remote dataset storage (an S3 bucket) answers. Prints every "
                    "problem and exits 1 if there is any.",
    )
    check.add_argument("--env", required=True, metavar="NAME", help="the environment to check")
    check.set_defaults(handler=check_environment)


def check_environment(args: argparse.Namespace, context: CliContext) -> int:
    """Print problems and warnings; 0 when the environment is valid."""
    try:
        loaded = load_environment(context.workspace, context.store, args.env, context.registry)
    except ConfigError as exc:
        print(f"Environment {args.env!r} has {len(exc.problems)} problem(s):", file=sys.stderr)
        for problem in exc.problems:
            print(f"  - {problem}", file=sys.stderr)
        return 1
    for warning in loaded.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    # remote storage (an S3 bucket, ...) is asked once, cheaply, with short timeouts
    storage = DatasetStorage(context.registry,
                             lambda p: context.workspace.resolve_config_path(p, loaded.environment.path),
                             loaded.config)
    storage_problems = storage.check(loaded.datasets)
    if storage_problems:
        print(f"Environment {args.env!r} has {len(storage_problems)} problem(s):", file=sys.stderr)
        for problem in storage_problems:
            print(f"  - {problem}", file=sys.stderr)
        return 1
    core = loaded.config.core
    images = [d for d in loaded.datasets if not d.disabled and d.dataset_type == "image"]
    print(f"Environment {args.env!r} is valid: {core.model_family} ({core.model_flavour or 'default flavour'}), "
          f"{core.model_type}, {len(images)} image dataset(s) from {loaded.datasets_path.name}.")
    return 0
