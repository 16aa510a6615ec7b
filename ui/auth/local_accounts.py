"""The server's local accounts as an :class:`~simpletuner.core.interfaces.AccountStore`: what the ``local`` login
provider checks passwords against."""

from __future__ import annotations

from simpletuner.core.interfaces import ExternalIdentity
from simpletuner.ui.auth.credentials import verify_password
from simpletuner.ui.db.models import User


class LocalAccounts:
    """Local accounts in the server's database (created by setup, an admin, registration or ``simpletuner users``)."""

    def verify(self, username: str, password: str) -> ExternalIdentity | None:
        """Unknown names, deactivated accounts and wrong passwords all cost one bcrypt check and give None, so a
        caller cannot tell them apart by answer or by timing."""
        user = User.get_or_none((User.username_key == username.lower()) & (User.auth_source == "local"))
        usable = user is not None and user.active and bool(user.password_hash)
        stored = user.password_hash if usable and user is not None else None
        if not verify_password(password, stored, rounds=_cost_of_existing_hashes()):
            return None
        assert user is not None
        return ExternalIdentity(username=user.username, email=user.email, display_name=user.display_name)

    def count_usable(self) -> int:
        """Active local accounts with a password."""
        return User.select().where((User.auth_source == "local") & User.password_hash.is_null(False)
                                   & (User.active == True)).count()  # noqa: E712 (peewee expression)


def _cost_of_existing_hashes() -> int:
    """The bcrypt cost of stored hashes, so the dummy check for an unknown user takes as long as a real one."""
    row = User.select(User.password_hash).where(User.password_hash.is_null(False)).limit(1).first()
    try:
        return int(row.password_hash.split("$")[2]) if row else 12
    except (IndexError, ValueError):
        return 12
