"""The AuthProvider interface: password-style or redirect-style logins yielding an external identity."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Protocol

import attrs


@attrs.frozen
class ExternalIdentity:
    """Who logged in, as the provider knows them; ``groups`` map to permission levels."""

    username: str
    email: str | None = None
    display_name: str | None = None
    groups: tuple[str, ...] = ()


@attrs.frozen
class RedirectStart:
    """Where to send the browser, and the values to keep (server-side) until the provider calls back."""

    url: str
    state: Mapping[str, str]


class AccountStore(Protocol):
    """The server's local accounts, as the server hands them to login providers: the ``local`` provider checks
    passwords through it, so it needs no knowledge of the server's database.

    Example::

        >>> class OneAccount:
        ...     def verify(self, username, password):
        ...         return ExternalIdentity(username="ada") if (username, password) == ("ada", "pw") else None
        ...     def count_usable(self): return 1
        >>> OneAccount().verify("ada", "pw").username
        'ada'
    """

    def verify(self, username: str, password: str) -> ExternalIdentity | None:
        """The identity of an active local account whose password matches; None otherwise (unknown names,
        deactivated accounts and wrong passwords answer alike and take as long)."""

    def count_usable(self) -> int:
        """How many active local accounts have a password."""


class AuthProvider(ABC):  # noqa: B024 - the two styles below declare the abstract methods
    """Base of login providers. Subclass :class:`PasswordAuthProvider` or :class:`RedirectAuthProvider`."""

    def test_connection(self) -> str:
        """Check the provider's configuration against the real service; return a one-line summary, or raise
        with a message saying what is wrong."""
        return "nothing to check"


class PasswordAuthProvider(AuthProvider):
    """Checks a username and password (local accounts, LDAP).

    Example::

        >>> class Fixed(PasswordAuthProvider):
        ...     def authenticate(self, username, password):
        ...         return ExternalIdentity(username, groups=("ml",)) if password == "pw" else None
        >>> Fixed().authenticate("ada", "pw")
        ExternalIdentity(username='ada', email=None, display_name=None, groups=('ml',))
        >>> Fixed().authenticate("ada", "nope") is None
        True
    """

    @abstractmethod
    def authenticate(self, username: str, password: str) -> ExternalIdentity | None:
        """The identity for valid credentials, None for invalid ones; raise only when the service fails."""


class RedirectAuthProvider(AuthProvider):
    """A browser-redirect flow (OIDC): :meth:`begin` gives the URL, :meth:`complete` handles the callback.

    Example::

        >>> class Echo(RedirectAuthProvider):
        ...     def begin(self, redirect_uri): return RedirectStart(f"https://idp/?cb={redirect_uri}", {"s": "1"})
        ...     def complete(self, params, state):
        ...         return ExternalIdentity(params["user"]) if state["s"] == "1" else None
        >>> start = Echo().begin("https://me/cb")
        >>> Echo().complete({"user": "ada"}, start.state).username
        'ada'
    """

    @abstractmethod
    def begin(self, redirect_uri: str) -> RedirectStart:
        """Start a login: the provider URL to redirect to and the state to keep until the callback."""

    @abstractmethod
    def complete(self, params: Mapping[str, str], state: Mapping[str, str]) -> ExternalIdentity | None:
        """Finish a login from the callback's query parameters and the kept state; None if refused."""
