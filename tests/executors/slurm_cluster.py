"""A private single-host Slurm cluster for tests: munged with its own key and socket, slurmctld and slurmd with a
``slurm.conf`` in a temporary folder naming this host, ports picked free, run as the current user."""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

SLURM_BINARIES = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scancel", "scontrol", "srun")


def missing_binaries() -> list[str]:
    """The Slurm and munge programs not installed on this machine."""
    return [name for name in SLURM_BINARIES
            if shutil.which(name) is None and not Path(f"/usr/sbin/{name}").exists()]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _program(name: str) -> str:
    return shutil.which(name) or f"/usr/sbin/{name}"


class SlurmCluster:
    """slurmctld + slurmd on this host with one node of ``cpus`` CPUs in a partition ``debug``.

    ``environ`` holds what Slurm's client commands need (``SLURM_CONF``); :meth:`stop` ends every daemon.
    """

    def __init__(self, root: Path, cpus: int = 2) -> None:
        self.root = root
        self.cpus = cpus
        for folder in ("munge", "state", "spool", "log"):
            (root / folder).mkdir(parents=True, exist_ok=True)
        os.chmod(root / "munge", 0o700)
        self.socket = root / "munge" / "munge.socket"
        self.conf = root / "slurm.conf"
        self.node = socket.gethostname().split(".")[0]
        self.environ = {"SLURM_CONF": str(self.conf)}
        self.processes: list[subprocess.Popen[bytes]] = []
        self._start_munge()
        self._write_conf()
        self._start_slurm()

    def _start_munge(self) -> None:
        key = self.root / "munge" / "munge.key"
        key.write_bytes(os.urandom(1024))
        os.chmod(key, 0o400)
        subprocess.run([_program("munged"), "--force", f"--key-file={key}", f"--socket={self.socket}",
                        f"--pid-file={self.root / 'munge' / 'munged.pid'}",
                        f"--log-file={self.root / 'log' / 'munged.log'}",
                        f"--seed-file={self.root / 'munge' / 'munged.seed'}"], check=True, capture_output=True)

    def _write_conf(self) -> None:
        user = getpass.getuser()
        state, spool, log = self.root / "state", self.root / "spool", self.root / "log"
        self.conf.write_text("\n".join([
            "ClusterName=simpletuner-test",
            f"SlurmctldHost={self.node}(127.0.0.1)",
            f"SlurmctldPort={_free_port()}",
            f"SlurmdPort={_free_port()}",
            f"SlurmUser={user}",
            f"SlurmdUser={user}",
            "AuthType=auth/munge",
            "CredType=cred/munge",
            f"AuthInfo=socket={self.socket}",
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none",
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_CPU",
            "SchedulerType=sched/builtin",
            "AccountingStorageType=accounting_storage/none",
            "JobAcctGatherType=jobacct_gather/none",
            "JobCompType=jobcomp/none",
            "MpiDefault=none",
            "ReturnToService=2",
            "KillWait=5",
            "MinJobAge=300",
            "SlurmctldTimeout=30",
            "SlurmdTimeout=30",
            "InactiveLimit=0",
            "Waittime=0",
            f"StateSaveLocation={state}",
            f"SlurmdSpoolDir={spool}",
            f"SlurmctldPidFile={self.root / 'slurmctld.pid'}",
            f"SlurmdPidFile={self.root / 'slurmd.pid'}",
            f"SlurmctldLogFile={log / 'slurmctld.log'}",
            f"SlurmdLogFile={log / 'slurmd.log'}",
            "SlurmctldDebug=info",
            "SlurmdDebug=info",
            f"NodeName={self.node} NodeAddr=127.0.0.1 CPUs={self.cpus} State=UNKNOWN",
            f"PartitionName=debug Nodes={self.node} Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO",
            "",
        ]))

    def _start_slurm(self) -> None:
        env = {**os.environ, **self.environ}
        for program in ("slurmctld", "slurmd"):
            self.processes.append(subprocess.Popen([_program(program), "-D", "-f", str(self.conf)], env=env,
                                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            done = subprocess.run(["sinfo", "-h", "-o", "%t"], env=env, capture_output=True, text=True)
            if done.returncode == 0 and done.stdout.strip() in ("idle", "mix", "alloc"):
                return
            for process in self.processes:
                if process.poll() is not None:
                    raise RuntimeError(f"a Slurm daemon exited: {self.logs()}")
            time.sleep(0.2)
        raise RuntimeError(f"the Slurm node did not become idle within 60 s: {self.logs()}")

    def logs(self) -> str:
        """The daemons' log tails, for failure messages."""
        parts = []
        for name in ("munged.log", "slurmctld.log", "slurmd.log"):
            path = self.root / "log" / name
            if path.exists():
                parts.append(f"--- {name}\n" + "\n".join(path.read_text(errors="replace").splitlines()[-20:]))
        return "\n".join(parts)

    def stop(self) -> None:
        """End slurmd, slurmctld and munged."""
        for process in reversed(self.processes):
            process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        pid_file = self.root / "munge" / "munged.pid"
        if pid_file.exists():
            try:
                os.kill(int(pid_file.read_text().strip()), 15)
            except (ProcessLookupError, ValueError):
                pass
