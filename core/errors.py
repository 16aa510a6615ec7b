"""Exceptions that carry a message meant for the user.

The CLI prints a :class:`SimpleTunerError` as one clean message on stderr (no traceback); anything else is a bug.
"""

from __future__ import annotations

from collections.abc import Iterable


class SimpleTunerError(Exception):
    """An error caused by input from outside (a config, a flag, a plugin); its message tells how to fix it."""


class ConfigError(SimpleTunerError):
    """One or more problems in a configuration; ``problems`` lists each as a ``"$.key: what is wrong"`` line."""

    def __init__(self, problems: Iterable[str], source: str | None = None) -> None:
        self.problems = list(problems)
        self.source = source
        where = f" in {source}" if source else ""
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"{len(self.problems)} problem(s){where}:\n{lines}")


class PluginConflictError(SimpleTunerError):
    """Two plugins registered the same name for the same kind."""


class UnknownPluginError(SimpleTunerError):
    """A name was asked for that no installed plugin registered."""


class NotFound(SimpleTunerError):
    """Something asked for by name does not exist (the server answers 404)."""


class AlreadyExists(SimpleTunerError):
    """A name to create or rename to is taken (the server answers 409)."""


class WorkspaceError(SimpleTunerError):
    """An environment operation failed (bad name, missing or existing environment, bad archive)."""


class EnvironmentNotFound(WorkspaceError, NotFound):
    """No environment of that name."""


class EnvironmentExists(WorkspaceError, AlreadyExists):
    """An environment of that name already exists."""


class DataBackendError(SimpleTunerError):
    """A data backend cannot reach or use its storage (missing bucket, refused credentials, unreachable endpoint);
    the message is one line naming the location and the fix."""
