"""First run: the one-time setup token that guards first-admin creation from non-loopback clients."""

from __future__ import annotations

from simpletuner.ui.auth.credentials import new_token, same, token_hash
from simpletuner.ui.db.models import Setting, User

SETUP_TOKEN_KEY = "setup_token"
SETUP_DONE_KEY = "setup_done"


def issue_setup_token() -> str | None:
    """While no user exists, a fresh token (its hash stored for every worker to check); None once set up."""
    if User.select().exists():
        Setting.delete().where(Setting.key == SETUP_TOKEN_KEY).execute()
        return None
    token = new_token(24)
    Setting.insert(key=SETUP_TOKEN_KEY, value={"hash": token_hash(token)}).on_conflict(
        conflict_target=[Setting.key], update={Setting.value: {"hash": token_hash(token)}}
    ).execute()
    return token


def setup_token_matches(token: str | None) -> bool:
    """True when ``token`` is the current setup token."""
    row = Setting.get_or_none(Setting.key == SETUP_TOKEN_KEY)
    return bool(token) and row is not None and same(token_hash(token or ""), row.value.get("hash"))
