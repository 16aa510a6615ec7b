"""``simpletuner train``: train an environment here, or across processes through ``accelerate launch``."""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import attrs

from simpletuner.core.cli.context import CliContext
from simpletuner.core.config import LoadedEnvironment, load_environment
from simpletuner.core.config.job_guard import job_guard_problems
from simpletuner.core.distributed import launch_arguments, needs_launcher, uses_deepspeed
from simpletuner.core.environments import CONFIG_FILE, EnvironmentStore
from simpletuner.core.errors import ConfigError, SimpleTunerError


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Register the ``train`` command."""
    train = commands.add_parser(
        "train", help="train an environment",
        description="Train the model of an environment (configs/NAME/) or of a config.json file's folder. Each run "
                    "writes into a new folder of its own under output_dir (<UTC start time>-<environment>); "
                    "progress goes to events.jsonl there and, on a terminal, to a progress bar.",
    )
    target = train.add_mutually_exclusive_group(required=True)
    target.add_argument("--env", metavar="NAME", help="the environment to train")
    target.add_argument("--config", metavar="PATH", type=Path,
                        help="a config.json (its folder holds multidatabackend.json) outside the configs folder")
    train.add_argument("--num_processes", "--num-processes", type=int, default=None, metavar="N",
                       help="processes to train with (one per GPU; on a CPU, N gloo processes) via accelerate "
                            "launch; the environment's num_processes if unset")
    train.add_argument("--run-dir", metavar="PATH", type=Path, default=None,
                       help="write into this run folder, made beforehand with its run.json and not used by any run "
                            "yet (the server makes one per job); a new one under output_dir if unset")
    train.set_defaults(handler=train_command)


def _store_and_name(args: argparse.Namespace, context: CliContext) -> tuple[EnvironmentStore, str]:
    if args.env:
        return context.store, args.env
    path: Path = args.config.expanduser().resolve()
    if path.is_dir():
        path = path / CONFIG_FILE
    if not path.is_file() or path.name != CONFIG_FILE:
        raise SimpleTunerError(f"--config {args.config}: expected an existing {CONFIG_FILE} (or its folder)")
    return EnvironmentStore(path.parent.parent), path.parent.name


def load_checked(context: CliContext, store: EnvironmentStore, name: str) -> LoadedEnvironment | None:
    """Load an environment for a run and repeat the checks the server makes before a job (paths inside the allowed
    roots, approved privileged values); prints every problem and returns None when there are any."""
    try:
        loaded = load_environment(context.workspace, store, name, context.registry)
        problems = job_guard_problems(context.workspace, store, loaded, context.registry)
        if problems:
            raise ConfigError(problems)
    except ConfigError as exc:
        print(f"Environment {name!r} has {len(exc.problems)} problem(s):", file=sys.stderr)
        for problem in exc.problems:
            print(f"  - {problem}", file=sys.stderr)
        return None
    return loaded


def train_command(args: argparse.Namespace, context: CliContext) -> int:
    """Check the environment, then train it (in this process, or relaunched under accelerate)."""
    if args.num_processes is not None and args.num_processes < 1:
        raise SimpleTunerError("--num_processes must be at least 1")
    store, name = _store_and_name(args, context)
    loaded = load_checked(context, store, name)
    if loaded is None:
        return 1
    for warning in loaded.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    core = loaded.config.core
    if args.num_processes is not None:
        core = attrs.evolve(core, num_processes=args.num_processes)
    if needs_launcher(core) and "LOCAL_RANK" not in os.environ:
        return _launch(args, context, core)
    from simpletuner.core.training.run import train

    main = int(os.environ.get("RANK", "0")) == 0
    result = train(loaded, context.workspace, context.registry, listeners=[_announce_resume] if main else None,
                   run_dir=args.run_dir)
    if main:
        print(f"Trained {result.step} steps. Model: {result.output}")
        print(f"Run folder: {result.run_dir}")
        validation = result.run_dir / "validation"
        if validation.is_dir():
            print(f"Validation images: {validation}")
    return 0


def _announce_resume(event: dict[str, Any]) -> None:
    """Name the checkpoint a run resumes, as soon as it is loaded."""
    if event["event"] == "run_started" and event.get("resumed_from"):
        print(f"Resuming from {event['resumed_from']} (step {event['start_step']}); this run writes into "
              f"{event['run_dir']}", flush=True)


def _launch(args: argparse.Namespace, context: CliContext, core: Any) -> int:
    """Re-run this command under ``accelerate launch`` with the environment's launch options (processes, machines,
    GPUs, main process address); gloo processes on a machine without GPUs."""
    import torch

    target = ["--env", args.env] if args.env else ["--config", str(args.config.expanduser().resolve())]
    if args.run_dir is not None:
        target += ["--run-dir", str(args.run_dir)]
    options = launch_arguments(core)
    command = [sys.executable, "-m", "accelerate.commands.launch", *options, "--dynamo_backend", "no",
               "-m", "simpletuner.core.cli.main", "--workspace", str(context.workspace.root), "train", *target]
    env = dict(os.environ)
    if "--multi_gpu" not in options and (uses_deepspeed(core) or core.fsdp_enable):
        # DeepSpeed and FSDP need a process group even for one process, which accelerate starts without one (its
        # --multi_gpu wants two processes at least): the process is rank 0 of a world of one, on a free port so
        # that one-GPU runs on the machine's other GPUs do not collide
        env.update(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", LOCAL_WORLD_SIZE="1", MASTER_ADDR="127.0.0.1",
                   MASTER_PORT=str(_free_port()))
    if not torch.cuda.is_available():
        env.setdefault("OMP_NUM_THREADS", "1")
    return subprocess.call(command, env=env)


def _free_port() -> int:
    """A TCP port on the loopback interface that nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
