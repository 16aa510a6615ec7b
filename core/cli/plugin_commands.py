"""``simpletuner plugins``: what is installed, from which distribution, and what failed to load."""

from __future__ import annotations

import argparse

from simpletuner.core.cli.context import CliContext, print_json, print_table


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Register the ``plugins`` command group."""
    plugins = commands.add_parser("plugins", help="list installed plugins", description="Inspect plugins.")
    sub = plugins.add_subparsers(dest="plugins_command", metavar="COMMAND", required=True)
    listing = sub.add_parser(
        "list",
        help="every plugin by kind, with its distribution and version, and failures",
        description="List every registered plugin by kind, then plugins that failed to load with their error.",
    )
    listing.add_argument("--json", action="store_true",
                         help="print a JSON list of {kind, name, title, description, distribution, version, error}")
    listing.set_defaults(handler=list_plugins)


def list_plugins(args: argparse.Namespace, context: CliContext) -> int:
    """Print the registry; exits 0 even when some plugins failed (they are listed with their error)."""
    rows = context.registry.rows()
    if args.json:
        print_json([row.to_json() for row in rows])
        return 0
    loaded = [r for r in rows if r.error is None]
    failed = [r for r in rows if r.error is not None]
    if loaded:
        print_table(
            [[r.kind or "", r.name, r.distribution or "(in-process)", r.version or "", r.title or ""] for r in loaded],
            ["KIND", "NAME", "DISTRIBUTION", "VERSION", "TITLE"],
        )
    else:
        print("No plugins installed.")
    if failed:
        print(f"\n{len(failed)} plugin(s) failed to load:")
        for row in failed:
            source = f"{row.distribution} {row.version or ''}".strip() if row.distribution else "unknown distribution"
            print(f"  {row.name} ({source}): {row.error}")
    return 0
