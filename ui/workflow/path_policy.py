"""The server's path policy: the roots an admin allowed besides the workspace (a server setting), and the server's
private files inside the workspace that no configured path may reach."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from simpletuner.core.config.confinement import PathPolicy
from simpletuner.core.errors import SimpleTunerError
from simpletuner.core.workspace import SETTINGS_FILE, Workspace
from simpletuner.ui.db.connection import DEFAULT_SQLITE_NAME
from simpletuner.ui.db.models import Setting
from simpletuner.ui.tls import TLS_FOLDER

ALLOWED_ROOTS_KEY = "allowed_roots"
#: Workspace entries only the server itself uses: its database, logs, TLS pair, stored secrets, job records and
#: the workspace settings (which say where configs and outputs live).
PRIVATE_ENTRIES = (DEFAULT_SQLITE_NAME, f"{DEFAULT_SQLITE_NAME}-wal", f"{DEFAULT_SQLITE_NAME}-shm",
                   f"{DEFAULT_SQLITE_NAME}-journal", "logs", TLS_FOLDER, "secrets", "jobs", SETTINGS_FILE)


def allowed_roots() -> list[str]:
    """The roots an admin allowed (absolute folders), besides the workspace's own."""
    row = Setting.get_or_none(Setting.key == ALLOWED_ROOTS_KEY)
    roots = row.value.get("roots", []) if row is not None and isinstance(row.value, dict) else []
    return [r for r in roots if isinstance(r, str)]


def check_roots(roots: object) -> list[str]:
    """Validate a list of roots an admin wants to allow; raises :class:`SimpleTunerError` naming the bad entry."""
    if not isinstance(roots, list) or not all(isinstance(r, str) for r in roots):
        raise SimpleTunerError("roots must be a list of absolute folder paths, e.g. [\"/models\", \"/data\"]")
    if len(roots) > 50:
        raise SimpleTunerError("at most 50 roots may be allowed")
    checked: list[str] = []
    for root in roots:
        path = Path(root)
        if not path.is_absolute() or "\x00" in root:
            raise SimpleTunerError(f"{root!r} is not an absolute path; give folders such as /models or /data")
        resolved = path.resolve()
        if resolved == Path(resolved.anchor):
            raise SimpleTunerError(f"{root!r} is the filesystem root; allowing it would let configs reach every file")
        if not resolved.is_dir():
            raise SimpleTunerError(f"{root!r} is not an existing folder on the server")
        if str(resolved) not in checked:
            checked.append(str(resolved))
    return checked


def set_allowed_roots(roots: Sequence[str]) -> None:
    """Store the allowed roots (already checked)."""
    value = {"roots": list(roots)}
    if not Setting.update(value=value).where(Setting.key == ALLOWED_ROOTS_KEY).execute():
        Setting.create(key=ALLOWED_ROOTS_KEY, value=value)


def server_path_policy(workspace: Workspace) -> PathPolicy:
    """The policy environments are checked with on this server."""
    return PathPolicy.for_workspace(workspace, allowed_roots(),
                                    denied=[workspace.root / entry for entry in PRIVATE_ENTRIES])
