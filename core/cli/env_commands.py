"""``simpletuner env``: list, show, create, copy, rename, export, import and delete environments."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from simpletuner.core.cli.context import CliContext, print_json, print_table
from simpletuner.core.config import load_config
from simpletuner.core.config.schema import DEFAULT_SOURCE
from simpletuner.core.errors import WorkspaceError


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Register the ``env`` command group."""
    env = commands.add_parser(
        "env", help="manage training environments",
        description="Environments are folders configs/<name>/ holding config.json and multidatabackend.json.",
    )
    sub = env.add_subparsers(dest="env_command", metavar="COMMAND", required=True)

    p = sub.add_parser("list", help="list environments", description="List every environment of the workspace.")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(handler=list_environments)

    p = sub.add_parser("show", help="show the effective config of an environment",
                       description="Show every option's effective value and where it comes from "
                                   "(default, flavour, the default environment, or the environment itself).")
    p.add_argument("name")
    p.add_argument("--all", action="store_true", help="include options left at their defaults")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(handler=show_environment)

    p = sub.add_parser("create", help="create a blank environment", description="Create configs/NAME/config.json.")
    p.add_argument("name")
    p.set_defaults(handler=create_environment)

    for verb, helptext in (("copy", "duplicate an environment"), ("rename", "rename an environment")):
        p = sub.add_parser(verb, help=helptext, description=helptext.capitalize() + ".")
        p.add_argument("source")
        p.add_argument("target")
        p.set_defaults(handler=copy_environment if verb == "copy" else rename_environment)

    p = sub.add_parser("export", help="write an environment as a zip", description="Zip an environment's folder.")
    p.add_argument("name")
    p.add_argument("-o", "--output", type=Path, help="zip file to write (default: NAME.zip here)")
    p.set_defaults(handler=export_environment)

    p = sub.add_parser("import", help="create an environment from a zip",
                       description="Create an environment from a zip holding a config.json.")
    p.add_argument("archive", type=Path)
    p.add_argument("--name", help="environment name (default: the zip's top folder or file name)")
    p.set_defaults(handler=import_environment)

    p = sub.add_parser("delete", help="delete an environment", description="Delete an environment's folder.")
    p.add_argument("name")
    p.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")
    p.set_defaults(handler=delete_environment)


def list_environments(args: argparse.Namespace, context: CliContext) -> int:
    """Print the environments, and every folder that cannot be used as one with the reason."""
    environments = context.store.list()
    unloadable = context.store.unloadable()
    if args.json:
        print_json([env.summary() for env in environments] + [folder.summary() for folder in unloadable])
        return 0
    if not environments and not unloadable:
        print(f"No environments in {context.store.configs_dir}. Create one with 'simpletuner env create NAME'.")
        return 0
    if environments:
        print_table(
            [[e.name, ", ".join(p.name for p in e.datasets_files()) or "-",
              e.lycoris_file().name if e.lycoris_file() else "-", str(e.path)] for e in environments],
            ["NAME", "DATASETS", "LYCORIS", "PATH"],
        )
    problems = [(e.name, e.problem()) for e in environments] + [(f.name, f.error) for f in unloadable]
    for name, problem in problems:
        if problem is not None:
            print(f"{name}: cannot be loaded: {problem}")
    return 0


def show_environment(args: argparse.Namespace, context: CliContext) -> int:
    """Print the effective config with the source of every value."""
    env = context.store.get(args.name)
    config, warnings = load_config(context.store, env, context.registry)
    rows = [(info, value, source) for info, value, source in config.effective()
            if args.all or source != DEFAULT_SOURCE]
    if args.json:
        print_json({
            "name": env.name,
            "path": str(env.path),
            "options": [
                {"key": info.key, "value": "********" if info.secret and value else
                 config.schema.unstructure(info.key, value), "source": source, "owner": info.owner}
                for info, value, source in rows
            ],
            "warnings": warnings,
        })
        return 0
    print_table([[info.key, "********" if info.secret and value else repr(value), source]
                 for info, value, source in rows], ["KEY", "VALUE", "SOURCE"])
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    return 0


def create_environment(args: argparse.Namespace, context: CliContext) -> int:
    """Create a blank environment."""
    env = context.store.create(args.name)
    print(f"Created environment {env.name!r} at {env.path}")
    return 0


def copy_environment(args: argparse.Namespace, context: CliContext) -> int:
    """Duplicate an environment."""
    env = context.store.copy(args.source, args.target)
    print(f"Copied {args.source!r} to {env.name!r} at {env.path}")
    return 0


def rename_environment(args: argparse.Namespace, context: CliContext) -> int:
    """Rename an environment."""
    env = context.store.rename(args.source, args.target)
    print(f"Renamed {args.source!r} to {env.name!r}")
    return 0


def export_environment(args: argparse.Namespace, context: CliContext) -> int:
    """Zip an environment."""
    target = (args.output or Path(f"{args.name}.zip")).resolve()
    if not target.parent.is_dir():
        raise WorkspaceError(f"folder {target.parent} does not exist")
    context.store.export(args.name, target)
    print(f"Exported {args.name!r} to {target}")
    return 0


def import_environment(args: argparse.Namespace, context: CliContext) -> int:
    """Create an environment from a zip."""
    env = context.store.import_(args.archive, name=args.name)
    print(f"Imported {env.name!r} into {env.path}")
    return 0


def delete_environment(args: argparse.Namespace, context: CliContext) -> int:
    """Delete an environment after confirmation."""
    env = context.store.get(args.name)
    if not args.yes:
        if not sys.stdin.isatty():
            raise WorkspaceError(f"refusing to delete {env.name!r} without confirmation; pass --yes")
        answer = input(f"Delete environment {env.name!r} ({env.path})? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            print("Nothing deleted.")
            return 1
    context.store.delete(env.name)
    print(f"Deleted environment {env.name!r}")
    return 0
