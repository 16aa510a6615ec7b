"""Checking a user's Hub token before the server stores it: a ``whoami`` call with a time limit, refusing tokens
that cannot publish."""

from __future__ import annotations

import re
import threading
from typing import Any

from simpletuner.core.interfaces import TokenAccount, TokenRefused

TOKEN_RE = re.compile(r"^[\x21-\x7e]{8,512}$")
TOKEN_RULE = "the access token from your Hub settings (8-512 characters, no spaces)"
#: How long the whoami call may take before the login is refused (huggingface_hub sets no timeout of its own).
WHOAMI_TIMEOUT_S = 20.0


def default_endpoint() -> str:
    """huggingface_hub's endpoint (``HF_ENDPOINT`` or huggingface.co)."""
    from huggingface_hub import constants

    return str(constants.ENDPOINT)


def whoami(endpoint: str, token: str, timeout: float = WHOAMI_TIMEOUT_S) -> dict[str, Any]:
    """``HfApi(endpoint).whoami(token)``, with a time limit; raises :class:`TokenRefused` saying what went wrong."""
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
        raise TokenRefused(f"the Hub at {endpoint} did not answer within {timeout:.0f} s; try again later", 504)
    error = outcome.get("error")
    if isinstance(error, OfflineModeIsEnabled):
        raise TokenRefused("the server runs with HF_HUB_OFFLINE set; unset it to log in to the Hub", 503)
    if isinstance(error, HfHubHTTPError):
        status = error.response.status_code if error.response is not None else None
        if status in (401, 403):
            raise TokenRefused(f"the Hub at {endpoint} refused this token ({status}); copy a valid token from "
                               "your Hub settings (Access Tokens)", 422)
        raise TokenRefused(f"the Hub at {endpoint} answered {status}: {error}", 502)
    if error is not None:
        raise TokenRefused(f"could not reach the Hub at {endpoint}: {error}", 502)
    answer = outcome["answer"]
    if not isinstance(answer, dict) or not isinstance(answer.get("name"), str):
        raise TokenRefused(f"the Hub at {endpoint} sent an unexpected whoami answer", 502)
    return answer


def verify_token(endpoint: str, token: str) -> TokenAccount:
    """The account a token publishes as; refuses malformed and read-only tokens (they cannot publish)."""
    if not TOKEN_RE.match(token):
        raise TokenRefused(f"token must be {TOKEN_RULE}", 400)
    answer = whoami(endpoint, token)
    access = (answer.get("auth") or {}).get("accessToken") or {}
    role = access.get("role") if isinstance(access.get("role"), str) else None
    if role == "read":
        raise TokenRefused("this token can only read; publishing needs a token with the 'write' role (or a "
                           "fine-grained token allowed to write your repositories)", 422)
    return TokenAccount(name=answer["name"], role=role)
