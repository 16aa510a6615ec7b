"""The checks a training process started by the server makes before it opens anything.

The server checks an environment when a job is queued and again when it launches it, then hands the training
process what it verified: the allowed roots (:data:`~simpletuner.core.config.confinement.ROOTS_ENV_VAR`) and the
digests of the approved privileged values (:data:`APPROVED_ENV_VAR`). The process checks both against the files it
actually reads, so a file edited or a symbolic link planted while the job waited is refused instead of used.
Without these variables (``simpletuner train`` run by the machine's own user) nothing is checked here.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping

from simpletuner.core.config.confinement import PathPolicy, path_problems
from simpletuner.core.config.loading import LoadedEnvironment
from simpletuner.core.config.trust import unapproved
from simpletuner.core.environments import EnvironmentStore
from simpletuner.core.errors import ConfigError
from simpletuner.core.plugins import Registry
from simpletuner.core.workspace import Workspace

#: Set by the server for its jobs: a JSON object of environment name → digest of its approved privileged values.
APPROVED_ENV_VAR = "SIMPLETUNER_APPROVED_PRIVILEGED"


def approval_problem(name: str, keys: list[str]) -> str:
    """The message for an environment whose privileged values wait for approval."""
    return (f"environment {name!r} sets privileged values that are not approved as they are now "
            f"({', '.join(keys)}); a user allowed to set privileged values (config.trusted) must approve them on "
            "the environment's page before it can train")


def approved_to_environ(approved: Mapping[str, str]) -> dict[str, str]:
    """The environment variable that hands approved digests to a training process."""
    return {APPROVED_ENV_VAR: json.dumps(dict(approved), sort_keys=True)}


def _approved_from_environ(environ: Mapping[str, str]) -> dict[str, str] | None:
    raw = environ.get(APPROVED_ENV_VAR)
    if raw is None:
        return None
    try:
        data = json.loads(raw)
    except ValueError:
        data = None
    if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
        raise ConfigError([f"{APPROVED_ENV_VAR} must be a JSON object of environment names to digests"])
    return data


def job_guard_problems(workspace: Workspace, store: EnvironmentStore, loaded: LoadedEnvironment, registry: Registry,
                       environ: Mapping[str, str] | None = None) -> list[str]:
    """Paths outside the roots the server allowed, and privileged values that differ from the approved ones."""
    environ = os.environ if environ is None else environ
    problems: list[str] = []
    policy = PathPolicy.from_environ(workspace, environ)
    if policy is not None:
        problems += path_problems(workspace, loaded.environment, loaded.config, loaded.datasets, registry, policy)
    approved = _approved_from_environ(environ)
    if approved is not None:
        for name, values in unapproved(workspace, store, loaded.environment, registry, approved):
            problems.append(approval_problem(name, values.keys()))
    return problems
