"""The entrypoint of a Ray job of several training processes:
``python -m simpletuner.plugins.executors.ray_driver --processes N --gpus-per-process G --cpus-per-process C --
COMMAND...``.

It reserves one placement-group bundle per process (packed onto as few machines as Ray can), learns each bundle's
machine and GPUs, then runs ``COMMAND`` once per bundle with the torch.distributed rendezvous accelerate reads
(``MASTER_ADDR``/``MASTER_PORT`` of the first process, ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``LOCAL_WORLD_SIZE``), each machine's processes seeing the GPUs of that machine's bundles in local-rank order. It
exits with the first non-zero exit code of the processes (0 when all succeed). Runs on the cluster, never on the
server.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
from typing import Any


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("", 0))
        return int(sock.getsockname()[1])


def _where() -> tuple[str, list[str], int]:
    import ray

    return ray.util.get_node_ip_address(), [str(g) for g in ray.get_gpu_ids()], _free_port()


def _die_with_parent() -> None:
    """In the child, before exec: ask Linux for SIGTERM when the Ray worker that started it dies, so that a stopped
    job leaves no training process behind (Ray ends its workers without forwarding signals to their children)."""
    if sys.platform.startswith("linux"):
        import ctypes
        import signal

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1: PR_SET_PDEATHSIG


def _run(command: list[str], env: dict[str, str]) -> int:
    return subprocess.call(command, env={**os.environ, **env}, preexec_fn=_die_with_parent)


def rendezvous(places: list[tuple[str, list[str], int]]) -> list[dict[str, str]]:
    """Each process's variables, from each bundle's (machine address, GPU ids, a free port there).

    >>> [e["LOCAL_RANK"] + "/" + e["CUDA_VISIBLE_DEVICES"] for e in rendezvous(
    ...     [("10.0.0.1", ["0"], 5000), ("10.0.0.2", ["3"], 6000), ("10.0.0.1", ["1"], 5001)])]
    ['0/0,1', '0/3', '1/0,1']
    """
    master, port = places[0][0], places[0][2]
    envs = []
    for rank, (address, _, _) in enumerate(places):
        same = [i for i, place in enumerate(places) if place[0] == address]
        gpus = [gpu for i in same for gpu in places[i][1]]
        env = {"MASTER_ADDR": master, "MASTER_PORT": str(port), "RANK": str(rank), "WORLD_SIZE": str(len(places)),
               "LOCAL_RANK": str(same.index(rank)), "LOCAL_WORLD_SIZE": str(len(same))}
        if gpus:
            env["CUDA_VISIBLE_DEVICES"] = ",".join(gpus)
        envs.append(env)
    return envs


def main(argv: list[str] | None = None) -> int:
    """Place the processes, run them, return the first failure's exit code."""
    import ray
    from ray.util.placement_group import placement_group, remove_placement_group
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    parser = argparse.ArgumentParser(prog="simpletuner-ray-driver")
    parser.add_argument("--processes", type=int, required=True)
    parser.add_argument("--gpus-per-process", type=float, default=0.0)
    parser.add_argument("--cpus-per-process", type=float, default=1.0)
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    ray.init(address="auto", log_to_driver=True)
    bundle: dict[str, float] = {"CPU": args.cpus_per_process}
    if args.gpus_per_process:
        bundle["GPU"] = args.gpus_per_process
    group = placement_group([dict(bundle) for _ in range(args.processes)], strategy="PACK")
    ray.get(group.ready())
    try:
        def on(index: int) -> dict[str, Any]:
            return {"scheduling_strategy": PlacementGroupSchedulingStrategy(group, placement_group_bundle_index=index),
                    "num_cpus": args.cpus_per_process, "num_gpus": args.gpus_per_process}

        where = ray.remote(_where)
        places = ray.get([where.options(**on(i)).remote() for i in range(args.processes)])
        run = ray.remote(_run)
        codes = ray.get([run.options(**on(i)).remote(command, env)
                         for i, env in enumerate(rendezvous(places))])
    finally:
        remove_placement_group(group)
    failed = [code for code in codes if code != 0]
    return failed[0] if failed else 0


if __name__ == "__main__":
    sys.exit(main())
