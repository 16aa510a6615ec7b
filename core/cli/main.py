"""The ``simpletuner`` command."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from simpletuner.core import __version__
from simpletuner.core.cli import (
    config_commands,
    demo_commands,
    env_commands,
    job_commands,
    plugin_commands,
    preset_commands,
    train_commands,
    try_commands,
)
from simpletuner.core.cli.context import CliContext
from simpletuner.core.cli.registry import installed_command_modules
from simpletuner.core.errors import SimpleTunerError

_COMMAND_MODULES = (plugin_commands, env_commands, config_commands, preset_commands, train_commands, try_commands,
                    demo_commands, job_commands)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = argparse.ArgumentParser(
        prog="simpletuner",
        description="Fine-tune diffusion transformers (Flux, Sana, PixArt and plugin families).",
        epilog="Workspace: --workspace, else $SIMPLETUNER_WORKSPACE, else ~/.simpletuner.",
    )
    parser.add_argument("--version", action="version", version=f"simpletuner {__version__}")
    parser.add_argument("--workspace", metavar="PATH", help="workspace folder (configs/, datasets/, output/)")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in (*_COMMAND_MODULES, *installed_command_modules()):
        module.add_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; user mistakes print one message on stderr and exit non-zero, never a traceback."""
    parser = build_parser()
    args = parser.parse_args(argv)
    _quiet_import_noise()
    context = CliContext(workspace_path=args.workspace)
    try:
        return int(args.handler(args, context) or 0)
    except SimpleTunerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


#: Loggers that warn on import about optional parts this run does not use: torchao's CUDA kernels missing on a CPU
#: build of torch, torch's pytree registration notices, and diffusers' loader of torchao-serialised checkpoints.
#: Left on, they fill the first lines of every job's log; real errors are still logged.
_IMPORT_NOISE = ("torchao", "torch.utils._pytree", "diffusers.quantizers.torchao.torchao_quantizer")


def _quiet_import_noise() -> None:
    import logging

    for name in _IMPORT_NOISE:
        logging.getLogger(name).setLevel(logging.ERROR)


if __name__ == "__main__":
    sys.exit(main())
