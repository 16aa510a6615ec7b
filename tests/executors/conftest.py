"""Fixtures of the executor tests: the job tests' tiny Flux pipeline and held data backend, a private Slurm
cluster and a private Ray cluster on this host, and servers whose jobs run on them."""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from jobs.conftest import held_site, tiny_flux  # noqa: F401 (fixtures shared with the job tests)

from .ray_cluster import RayCluster, ray_missing
from .slurm_cluster import SlurmCluster, missing_binaries

#: The folder of this interpreter's console scripts (``simpletuner``, ``ray``): cluster jobs find them on PATH.
BIN = str(Path(sys.executable).parent)


def cluster_path() -> str:
    """PATH for the clusters' jobs: this interpreter's scripts first."""
    return f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"


@pytest.fixture(scope="session")
def slurm() -> Iterator[SlurmCluster]:
    """slurmctld + slurmd (one node, 2 CPUs) with a private munged; skipped where Slurm is not installed."""
    missing = missing_binaries()
    if missing:
        pytest.skip(f"Slurm is not installed ({', '.join(missing)} missing): apt-get install slurmctld slurmd "
                    "slurm-client munge")
    # Slurm's socket and state paths must stay short (a Unix socket path has at most 107 bytes).
    root = Path(tempfile.mkdtemp(prefix="st-slurm-"))
    cluster = SlurmCluster(root)
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def ray_cluster(held_site: Path) -> Iterator[RayCluster]:  # noqa: F811 (the fixture imported above)
    """A Ray head node (2 CPUs, its Jobs API on a free port) whose jobs can use the ``held-local`` backend; skipped
    where Ray is not installed."""
    reason = ray_missing()
    if reason:
        pytest.skip(reason)
    cluster = RayCluster(Path(tempfile.mkdtemp(prefix="st-ray-")), path=cluster_path(),
                         environ={"PYTHONPATH": str(held_site), "OMP_NUM_THREADS": "1"})
    yield cluster
    cluster.stop()
