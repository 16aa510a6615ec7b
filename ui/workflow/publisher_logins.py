"""Publisher logins: each user's token for a publisher that publishes as its users (a publisher whose spec declares
a :class:`~simpletuner.core.specs.UserToken`, such as the Hugging Face Hub), checked by the publisher and stored
write-only in the workspace.

Tokens are per user, not server-wide: on a shared GPU server every researcher publishes under their own account
with their own rights, and nobody can publish (or overwrite repositories) as someone else. An operator who wants one
account for every run configures the publisher's own server-wide credential instead (``HF_TOKEN`` for the Hub).

A token lives in ``<workspace>/secrets/<publisher>/<user id>.token`` (mode 0600, in a 0700 folder) beside a
``.json`` file with what the service said about it (account name, endpoint, role) — the only part ever shown again.
The job runner hands the owner's token file to the training process in the variable the publisher names.
"""

from __future__ import annotations

import json
import os
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import attrs

from simpletuner.core.atomic import atomic_write_json, atomic_write_text
from simpletuner.core.hub_tokens import user_token_scope
from simpletuner.core.plugins import Registry
from simpletuner.core.specs import PublisherSpec, UserToken
from simpletuner.core.workspace import Workspace
from simpletuner.ui.private_files import PRIVATE_FILE, private_dir

SECRETS_DIR = "secrets"
#: The publisher whose stored token also reads private Hub datasets.
HUB_PUBLISHER = "hf-hub"
#: Where Hub tokens were kept before tokens were stored per publisher; moved on server start.
_LEGACY_HUB_DIR = ("hub", "hf-hub")


@attrs.frozen
class StoredLogin:
    """What the service said about a stored token (never the token itself)."""

    name: str
    endpoint: str
    role: str | None
    saved_at: float

    def to_json(self) -> dict[str, Any]:
        """JSON-ready."""
        return attrs.asdict(self)


def token_publishers(registry: Registry) -> dict[str, UserToken]:
    """Publishers that publish as each user with their own token, by name."""
    return {name: spec.user_token for name, spec in registry.publishers().items() if spec.user_token is not None}


def token_path(workspace: Workspace, publisher: str, user_id: int) -> Path:
    """Where the token of user ``user_id`` for ``publisher`` is stored (it may not exist)."""
    return workspace.root / SECRETS_DIR / publisher / f"{int(user_id)}.token"


def _meta_path(workspace: Workspace, publisher: str, user_id: int) -> Path:
    return token_path(workspace, publisher, user_id).with_suffix(".json")


def account(workspace: Workspace, publisher: str, user_id: int) -> StoredLogin | None:
    """The stored login of a user, or None."""
    meta = _meta_path(workspace, publisher, user_id)
    if not token_path(workspace, publisher, user_id).is_file() or not meta.is_file():
        return None
    try:
        data = json.loads(meta.read_text(encoding="utf-8"))
        return StoredLogin(name=data["name"], endpoint=data["endpoint"], role=data.get("role"),
                           saved_at=data["saved_at"])
    except (ValueError, KeyError, TypeError):
        return None


def log_in(workspace: Workspace, spec: PublisherSpec, user_id: int, token: str, endpoint: str,
           now: float) -> StoredLogin:
    """Have the publisher check ``token`` against ``endpoint``, then store it for the user; raises
    :class:`~simpletuner.core.interfaces.TokenRefused` saying why not."""
    assert spec.user_token is not None
    found = spec.user_token.verify(endpoint, token)
    path = token_path(workspace, spec.name, user_id)
    private_dir(workspace.root / SECRETS_DIR)
    private_dir(path.parent)
    atomic_write_text(path, token + "\n")  # a fresh temporary file: created 0600
    os.chmod(path, PRIVATE_FILE)
    login = StoredLogin(name=found.name, endpoint=endpoint, role=found.role, saved_at=now)
    atomic_write_json(_meta_path(workspace, spec.name, user_id), login.to_json())
    return login


def log_out(workspace: Workspace, publisher: str, user_id: int) -> bool:
    """Forget a user's token for one publisher; returns whether one was stored."""
    path = token_path(workspace, publisher, user_id)
    existed = path.is_file()
    path.unlink(missing_ok=True)
    _meta_path(workspace, publisher, user_id).unlink(missing_ok=True)
    return existed


def log_out_everywhere(workspace: Workspace, user_id: int) -> list[str]:
    """Forget a user's tokens for every publisher (when the user is deleted); returns the publishers concerned."""
    folder = workspace.root / SECRETS_DIR
    publishers = sorted(p.name for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []
    return [name for name in publishers if log_out(workspace, name, user_id)]


def read_scope(workspace: Workspace, user_id: int | None,
               publisher: str = HUB_PUBLISHER) -> AbstractContextManager[None]:
    """Hub reads prepared inside this block (a huggingface dataset's test and preview) use the user's stored token
    for ``publisher``, only against the endpoint it was checked on, and never another's or the server's own login
    (see :mod:`simpletuner.core.hub_tokens`)."""
    found = account(workspace, publisher, user_id) if user_id is not None else None
    token = None
    if found is not None and user_id is not None:
        try:
            token = token_path(workspace, publisher, user_id).read_text(encoding="utf-8").strip() or None
        except OSError:
            token = None
    return user_token_scope(token, found.endpoint if found is not None else None)


def token_files(workspace: Workspace, registry: Registry, user_id: int) -> dict[str, str]:
    """The environment variables that hand a job's owner's stored tokens to its process."""
    return {user_token.file_env_var: str(token_path(workspace, name, user_id))
            for name, user_token in token_publishers(registry).items()
            if token_path(workspace, name, user_id).is_file()}


def remove_orphans(workspace: Workspace, user_ids: set[int]) -> list[int]:
    """Remove the stored tokens of users not in ``user_ids`` (deleted while the server could not remove them, or by
    an older release); returns the ids whose tokens were removed. Tokens kept where an older release put them are
    moved to their publisher's folder first.

    User ids can be given again to new accounts (SQLite reuses the highest id once its row is gone), so a token
    must never outlive its user: the new account would publish as the old one.
    """
    folder = workspace.root / SECRETS_DIR
    legacy, current = (folder / name for name in _LEGACY_HUB_DIR)
    if legacy.is_dir() and not current.exists():
        legacy.rename(current)
    removed: set[int] = set()
    for path in sorted(folder.glob("*/*.token")) if folder.is_dir() else []:
        if path.stem.isdigit() and int(path.stem) not in user_ids:
            log_out(workspace, path.parent.name, int(path.stem))
            removed.add(int(path.stem))
    return sorted(removed)
