"""Hub login: each user's Hugging Face token, checked with a whoami call and stored write-only in the workspace.

Tokens are per user, not server-wide: on a shared GPU server every researcher publishes under their own Hub
account with their own rights, and nobody can publish (or overwrite repositories) as someone else. An operator who
wants one account for every run sets ``HF_TOKEN`` in the server's environment instead; it takes precedence.

A token lives in ``<workspace>/secrets/hub/<user id>.token`` (mode 0600, in a 0700 folder) beside a ``.json`` file
with what the Hub said about it (account name, endpoint, role) — the only part ever shown again. The job runner
hands the owner's token file to the training process (``SIMPLETUNER_HUB_TOKEN_FILE``), where the ``hf-hub``
publisher reads it.
"""

from __future__ import annotations

import json
import os
import re
import threading
from pathlib import Path
from typing import Any

import attrs

from simpletuner.core.atomic import atomic_write_json, atomic_write_text
from simpletuner.core.workspace import Workspace
from simpletuner.publishers.hf_hub.tokens import TOKEN_FILE_ENV

__all__ = ["TOKEN_FILE_ENV", "HubAccount", "HubLoginError", "account", "log_in", "log_out", "remove_orphans",
           "token_path", "whoami"]

SECRETS_DIR = "secrets/hub"
TOKEN_RE = re.compile(r"^[\x21-\x7e]{8,512}$")
TOKEN_RULE = "the access token from your Hub settings (8-512 characters, no spaces)"
#: How long the whoami call may take before the login is refused (huggingface_hub sets no timeout of its own).
WHOAMI_TIMEOUT_S = 20.0


class HubLoginError(Exception):
    """A login that did not succeed; ``status`` is the HTTP status that fits."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


@attrs.frozen
class HubAccount:
    """What the Hub said about a token (never the token itself)."""

    name: str
    endpoint: str
    role: str | None
    saved_at: float

    def to_json(self) -> dict[str, Any]:
        """JSON-ready."""
        return attrs.asdict(self)


def default_endpoint() -> str:
    """huggingface_hub's endpoint (``HF_ENDPOINT`` or huggingface.co)."""
    from huggingface_hub import constants

    return constants.ENDPOINT


def token_path(workspace: Workspace, user_id: int) -> Path:
    """Where the token of user ``user_id`` is stored (it may not exist)."""
    return workspace.root / SECRETS_DIR / f"{int(user_id)}.token"


def _meta_path(workspace: Workspace, user_id: int) -> Path:
    return token_path(workspace, user_id).with_suffix(".json")


def account(workspace: Workspace, user_id: int) -> HubAccount | None:
    """The stored login of a user, or None."""
    meta = _meta_path(workspace, user_id)
    if not token_path(workspace, user_id).is_file() or not meta.is_file():
        return None
    try:
        data = json.loads(meta.read_text(encoding="utf-8"))
        return HubAccount(name=data["name"], endpoint=data["endpoint"], role=data.get("role"),
                          saved_at=data["saved_at"])
    except (ValueError, KeyError, TypeError):
        return None


def whoami(endpoint: str, token: str, timeout: float = WHOAMI_TIMEOUT_S) -> dict[str, Any]:
    """``HfApi(endpoint).whoami(token)``, with a time limit; raises :class:`HubLoginError` saying what went wrong."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    outcome: dict[str, Any] = {}

    def call() -> None:
        try:
            outcome["answer"] = HfApi(endpoint=endpoint).whoami(token=token)
        except Exception as exc:  # reported to the caller below
            outcome["error"] = exc

    # A daemon thread: an unresponsive Hub must not hold the request (huggingface_hub has no timeout here).
    thread = threading.Thread(target=call, name="hub-whoami", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise HubLoginError(f"the Hub at {endpoint} did not answer within {timeout:.0f} s; try again later", 504)
    error = outcome.get("error")
    if isinstance(error, OfflineModeIsEnabled):
        raise HubLoginError("the server runs with HF_HUB_OFFLINE set; unset it to log in to the Hub", 503)
    if isinstance(error, HfHubHTTPError):
        status = error.response.status_code if error.response is not None else None
        if status in (401, 403):
            raise HubLoginError(f"the Hub at {endpoint} refused this token ({status}); copy a valid token from "
                                "your Hub settings (Access Tokens)", 422)
        raise HubLoginError(f"the Hub at {endpoint} answered {status}: {error}", 502)
    if error is not None:
        raise HubLoginError(f"could not reach the Hub at {endpoint}: {error}", 502)
    answer = outcome["answer"]
    if not isinstance(answer, dict) or not isinstance(answer.get("name"), str):
        raise HubLoginError(f"the Hub at {endpoint} sent an unexpected whoami answer", 502)
    return answer


def log_in(workspace: Workspace, user_id: int, token: str, endpoint: str, now: float) -> HubAccount:
    """Check ``token`` against the Hub at ``endpoint`` and store it for the user; refuses read-only tokens (they
    cannot publish)."""
    if not TOKEN_RE.match(token):
        raise HubLoginError(f"token must be {TOKEN_RULE}", 400)
    answer = whoami(endpoint, token)
    access = (answer.get("auth") or {}).get("accessToken") or {}
    role = access.get("role") if isinstance(access.get("role"), str) else None
    if role == "read":
        raise HubLoginError("this token can only read; publishing needs a token with the 'write' role (or a "
                            "fine-grained token allowed to write your repositories)", 422)
    path = token_path(workspace, user_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    atomic_write_text(path, token + "\n")  # a fresh temporary file: created 0600
    os.chmod(path, 0o600)
    found = HubAccount(name=answer["name"], endpoint=endpoint, role=role, saved_at=now)
    atomic_write_json(_meta_path(workspace, user_id), found.to_json())
    return found


def log_out(workspace: Workspace, user_id: int) -> bool:
    """Forget a user's token; returns whether one was stored."""
    path = token_path(workspace, user_id)
    existed = path.is_file()
    path.unlink(missing_ok=True)
    _meta_path(workspace, user_id).unlink(missing_ok=True)
    return existed


def remove_orphans(workspace: Workspace, user_ids: set[int]) -> list[int]:
    """Remove the stored tokens of users not in ``user_ids`` (deleted while the server could not remove them, or by
    an older release); returns the ids whose tokens were removed.

    User ids can be given again to new accounts (SQLite reuses the highest id once its row is gone), so a token
    must never outlive its user: the new account would publish as the old one.
    """
    folder = workspace.root / SECRETS_DIR
    if not folder.is_dir():
        return []
    removed = []
    for path in sorted(folder.glob("*.token")):
        if path.stem.isdigit() and int(path.stem) not in user_ids:
            log_out(workspace, int(path.stem))
            removed.append(int(path.stem))
    return removed
