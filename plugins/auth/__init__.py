"""Built-in login providers: ``local`` (accounts with a password stored in the server's database).

This module is the entry point; it imports nothing heavy. LDAP and OIDC providers register from their own modules.
"""

from __future__ import annotations

from simpletuner.core.hookspecs import RegisterAuthProvider, hookimpl
from simpletuner.core.specs import AuthProviderSpec, lazy


@hookimpl
def register_auth_providers(register: RegisterAuthProvider) -> None:
    """Register the local-accounts provider."""
    register(
        AuthProviderSpec(
            name="local",
            title="Local accounts",
            description="Usernames and bcrypt-hashed passwords kept in SimpleTuner's own database.",
            style="password",
            factory=lazy("simpletuner.plugins.auth.local:LocalPasswordProvider"),
        )
    )
