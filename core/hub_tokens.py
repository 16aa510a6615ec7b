"""Which Hugging Face Hub token a read of the Hub (a dataset) uses, on behalf of which user.

On a shared server every user reads private datasets with their own token, stored through the web UI's Hub login,
and never with anyone else's — not with another user's and not with the server machine's own Hub login. The token
goes only to the Hub endpoint it was checked against (``HF_ENDPOINT``, else huggingface.co): a login made against
another endpoint is not used.

- ``HF_TOKEN`` in the environment wins everywhere: an operator who sets it decides for every read (huggingface_hub
  reads it itself).
- The server, while it works for a request, runs inside :func:`user_token_scope` with the requesting user's stored
  token (or none): a backend built there reads with that token, or anonymously.
- A training process started by the server for a user gets the user's stored token file in
  ``SIMPLETUNER_HUB_TOKEN_FILE`` (beside it, the ``.json`` file saying which endpoint it was checked against); a job
  of a user who stored none (``SIMPLETUNER_JOB_ID`` set, no token file) reads anonymously.
- Anywhere else (the CLI of the machine's user) huggingface_hub's own lookup applies (``hf auth login``).

    >>> with user_token_scope("hf_abc", "https://hub.example"):
    ...     read_token("https://hub.example"), read_token("https://huggingface.co")
    ('hf_abc', False)
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path

import attrs

#: Environment variable naming a file that holds the job owner's Hub token (one line, nothing else).
TOKEN_FILE_ENV = "SIMPLETUNER_HUB_TOKEN_FILE"
#: Set by the server's job runner in every job it starts.
JOB_ID_ENV = "SIMPLETUNER_JOB_ID"

#: What huggingface_hub and datasets take as ``token``: a token, False for none at all, None for their own lookup.
Token = str | bool | None


@attrs.frozen
class UserLogin:
    """A user's stored Hub token and the endpoint it was checked against (None: the user stored none)."""

    token: str | None
    endpoint: str | None


_SCOPE: ContextVar[UserLogin | None] = ContextVar("simpletuner_hub_user_login", default=None)


@contextmanager
def user_token_scope(token: str | None, endpoint: str | None) -> Iterator[None]:
    """Hub reads prepared inside the block are made for one user: with ``token`` where it was checked against
    their endpoint, else with no token."""
    reset = _SCOPE.set(UserLogin(token, endpoint))
    try:
        yield
    finally:
        _SCOPE.reset(reset)


def same_endpoint(a: str | None, b: str | None) -> bool:
    """Whether two endpoint URLs name the same Hub (case of the host and a trailing slash aside)."""
    return bool(a) and bool(b) and str(a).rstrip("/").lower() == str(b).rstrip("/").lower()


def _token_file_login(path: Path) -> UserLogin:
    """The token of a job's token file and the endpoint recorded beside it (None where either is unreadable)."""
    try:
        token = path.read_text(encoding="utf-8").strip() or None
    except OSError:
        return UserLogin(None, None)
    try:
        endpoint = json.loads(path.with_suffix(".json").read_text(encoding="utf-8")).get("endpoint")
    except (OSError, ValueError, AttributeError):
        endpoint = None
    return UserLogin(token, endpoint if isinstance(endpoint, str) else None)


def read_token(endpoint: str, environ: Mapping[str, str] | None = None) -> Token:
    """The ``token`` argument for reads from the Hub at ``endpoint`` made now (see the module's rules)."""
    env = os.environ if environ is None else environ
    if env.get("HF_TOKEN"):
        return None
    login = _SCOPE.get()
    if login is None and env.get(TOKEN_FILE_ENV):
        login = _token_file_login(Path(env[TOKEN_FILE_ENV]))
    if login is None:
        return False if env.get(JOB_ID_ENV) else None
    return login.token if login.token and same_endpoint(login.endpoint, endpoint) else False
