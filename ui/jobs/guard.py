"""What the server checks before it queues or launches a user's job, and what it hands the training process so
that the process checks the same again (see :mod:`simpletuner.core.config.job_guard`)."""

from __future__ import annotations

import attrs

from simpletuner.core.config.confinement import path_problems
from simpletuner.core.config.job_guard import approval_problem, approved_to_environ
from simpletuner.core.config.loading import load_environment
from simpletuner.core.config.trust import unapproved
from simpletuner.core.environments import DEFAULT_ENVIRONMENT, EnvironmentStore
from simpletuner.core.plugins import Registry
from simpletuner.core.workspace import Workspace
from simpletuner.ui.workflow.ownership import approved_digests
from simpletuner.ui.workflow.path_policy import server_path_policy


@attrs.frozen
class GuardResult:
    """Paths outside the allowed roots, and environments whose privileged values wait for approval."""

    path_problems: list[str]
    pending: list[tuple[str, list[str]]]  # (environment, its privileged keys)

    @property
    def approval_problems(self) -> list[str]:
        """One message per environment waiting for approval."""
        return [approval_problem(name, keys) for name, keys in self.pending]


def check_job(workspace: Workspace, registry: Registry, environment: str) -> GuardResult:
    """Check an environment (already known to load) against the server's path policy and its approvals."""
    store = EnvironmentStore(workspace.configs_dir)
    loaded = load_environment(workspace, store, environment, registry)
    paths = path_problems(workspace, loaded.environment, loaded.config, loaded.datasets, registry,
                          server_path_policy(workspace))
    approvals = approved_digests([environment, DEFAULT_ENVIRONMENT])
    pending = [(name, values.keys())
               for name, values in unapproved(workspace, store, loaded.environment, registry, approvals)]
    return GuardResult(paths, pending)


def guard_environ(workspace: Workspace, environment: str) -> dict[str, str]:
    """Environment variables that make a training process check paths and approvals itself before it starts."""
    return {**server_path_policy(workspace).to_environ(),
            **approved_to_environ(approved_digests([environment, DEFAULT_ENVIRONMENT]))}
