"""The command line's registry of commands: the kernel's own, plus command modules that other layers (the web
server's ``server``, ``users`` and ``apikeys``) or installed distributions add through the ``simpletuner.commands``
entry-point group.

A command module has one function, ``add_parser(commands)``, that adds its subcommands to the ``argparse``
sub-parsers and sets ``handler=function(args, context) -> int`` on each. It must import nothing heavy at module level:
every ``simpletuner`` invocation loads it to build the parser.

Example (a distribution's ``pyproject.toml``)::

    [project.entry-points."simpletuner.commands"]
    report = "my_package.cli"        # my_package/cli.py defines add_parser(commands)
"""

from __future__ import annotations

import argparse
import sys
from importlib.metadata import entry_points
from types import ModuleType
from typing import Protocol

COMMANDS_GROUP = "simpletuner.commands"


class CommandModule(Protocol):
    """A module (or object) that adds subcommands to the ``simpletuner`` parser."""

    def add_parser(self, commands: argparse._SubParsersAction) -> None:
        """Add subcommands, each with ``handler`` set to ``function(args, context) -> int``."""


def installed_command_modules() -> list[CommandModule | ModuleType]:
    """Command modules of the ``simpletuner.commands`` group, by entry-point name; one that fails to import is
    reported on stderr and left out, the others still work."""
    found: list[CommandModule | ModuleType] = []
    for entry in sorted(entry_points(group=COMMANDS_GROUP), key=lambda e: e.name):
        try:
            found.append(entry.load())
        except Exception as exc:  # noqa: BLE001 - a broken distribution must not break the whole command line
            print(f"warning: commands {entry.name!r} ({entry.value}) failed to load: {exc}", file=sys.stderr)
    return found
