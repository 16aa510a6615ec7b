"""Which Hub token the ``hf-hub`` publisher uses.

``HF_TOKEN`` in the environment wins (huggingface_hub reads it itself): an operator who sets it decides for every
run. Otherwise the file named by ``SIMPLETUNER_HUB_TOKEN_FILE`` is used; the web UI's job runner points it at the
token the job's owner stored through the Hub login, so each user publishes with their own account. Without either,
huggingface_hub's own lookup applies (its token file from ``hf auth login``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from simpletuner.core.hub_tokens import TOKEN_FILE_ENV


def read_token_file(path: Path) -> str | None:
    """The token stored in ``path``, or None when the file is missing or empty."""
    try:
        token = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    return token or None


def stored_token(environ: Mapping[str, str] | None = None) -> str | None:
    """The stored token to pass to ``HfApi``, or None to leave the choice to huggingface_hub (``HF_TOKEN`` set, or
    no stored token)."""
    env = os.environ if environ is None else environ
    if env.get("HF_TOKEN"):
        return None
    path = env.get(TOKEN_FILE_ENV)
    return read_token_file(Path(path)) if path else None
