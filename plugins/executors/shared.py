"""What the cluster executors share: the folder both the server and the cluster's machines reach."""

from __future__ import annotations

from pathlib import Path


def shared_dir_problems(key: str, shared_dir: str | None, workspace: Path, output_dir: Path) -> list[str]:
    """Problems that keep a cluster's machines from reading the workspace or writing the job's run folder where the
    server reads it: both must lie in ``shared_dir`` (the option ``key``), or in the workspace when it is unset."""
    root = Path(shared_dir).expanduser().resolve() if shared_dir else workspace.resolve()
    problems = []
    if shared_dir and not root.is_dir():
        problems.append(f"{key}: the shared folder {root} does not exist on the server; mount the shared filesystem "
                        "there or correct the option")
        return problems
    if shared_dir and not workspace.resolve().is_relative_to(root):
        problems.append(f"{key}: the workspace {workspace} is not inside the shared folder {root}; the cluster's "
                        "machines read the environment's files from it: move the workspace onto the shared "
                        "filesystem (SIMPLETUNER_WORKSPACE)")
    if not output_dir.resolve().is_relative_to(root):
        where = f"the shared folder {root}" if shared_dir else f"the workspace {root}"
        problems.append(f"output_dir: {output_dir} is not inside {where}, so the server could not read what the job "
                        f"writes there; use an output_dir inside it{'' if shared_dir else f' or set {key}'}")
    return problems
