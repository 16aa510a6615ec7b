"""The ``local`` login provider: checks a password against the bcrypt hash of a local account."""

from __future__ import annotations

from simpletuner.core.interfaces import ExternalIdentity, PasswordAuthProvider


class LocalPasswordProvider(PasswordAuthProvider):
    """Local accounts of the web UI (those created by setup, an admin, registration or ``simpletuner users``).

    Unknown names, deactivated accounts and wrong passwords all cost one bcrypt check and give the same None, so a
    caller cannot tell them apart by answer or by timing.
    """

    def __init__(self, options: object = None) -> None:
        self.options = options

    def authenticate(self, username: str, password: str) -> ExternalIdentity | None:
        """The identity of a local account when ``password`` matches its hash."""
        from simpletuner.ui.auth.credentials import verify_password
        from simpletuner.ui.db.models import User

        user = User.get_or_none((User.username_key == username.lower()) & (User.auth_source == "local"))
        usable = user is not None and user.active and bool(user.password_hash)
        stored = user.password_hash if usable and user is not None else None
        if not verify_password(password, stored, rounds=_cost_of_existing_hashes()):
            return None
        assert user is not None
        return ExternalIdentity(username=user.username, email=user.email, display_name=user.display_name)

    def test_connection(self) -> str:
        """Count the local accounts that can log in."""
        from simpletuner.ui.db.models import User

        count = User.select().where((User.auth_source == "local") & User.password_hash.is_null(False)
                                    & (User.active == True)).count()  # noqa: E712 (peewee expression)
        return f"{count} active local account(s) with a password"


def _cost_of_existing_hashes() -> int:
    """The bcrypt cost of stored hashes, so the dummy check for an unknown user takes as long as a real one."""
    from simpletuner.ui.db.models import User

    row = User.select(User.password_hash).where(User.password_hash.is_null(False)).limit(1).first()
    try:
        return int(row.password_hash.split("$")[2]) if row else 12
    except (IndexError, ValueError):
        return 12
