"""Built-in login providers: ``local`` (accounts with a password stored in the server's database).

This module is the entry point; it imports nothing heavy. LDAP and OIDC providers register from their own modules.
"""

from __future__ import annotations

from simpletuner.core.hookspecs import hookimpl
from simpletuner.core.specs import AuthProviderSpec


def _local_provider(options: object = None) -> object:
    from simpletuner.plugins.auth.local import LocalPasswordProvider

    return LocalPasswordProvider(options)


@hookimpl
def register_auth_providers(register):  # type: ignore[no-untyped-def]
    """Register the local-accounts provider."""
    register(
        AuthProviderSpec(
            name="local",
            title="Local accounts",
            description="Usernames and bcrypt-hashed passwords kept in SimpleTuner's own database.",
            style="password",
            factory=_local_provider,
        )
    )
