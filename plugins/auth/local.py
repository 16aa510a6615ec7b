"""The ``local`` login provider: the server's own accounts, checked through the account store the server hands
to it (see :class:`~simpletuner.core.interfaces.AccountStore`)."""

from __future__ import annotations

from typing import Any

from simpletuner.core.interfaces import AccountStore, ExternalIdentity, PasswordAuthProvider


class LocalPasswordProvider(PasswordAuthProvider):
    """Local accounts of the web UI (those created by setup, an admin, registration or ``simpletuner users``).

    >>> class OneAccount:
    ...     def verify(self, username, password):
    ...         return ExternalIdentity(username="ada") if password == "pw" else None
    ...     def count_usable(self): return 1
    >>> provider = LocalPasswordProvider(None, OneAccount())
    >>> provider.authenticate("ada", "pw").username, provider.authenticate("ada", "no")
    ('ada', None)
    >>> provider.test_connection()
    '1 active local account(s) with a password'
    """

    def __init__(self, options: Any, accounts: AccountStore) -> None:
        self.options = options
        self.accounts = accounts

    def authenticate(self, username: str, password: str) -> ExternalIdentity | None:
        """The identity of a local account when ``password`` matches its hash."""
        return self.accounts.verify(username, password)

    def test_connection(self) -> str:
        """Count the local accounts that can log in."""
        return f"{self.accounts.count_usable()} active local account(s) with a password"
