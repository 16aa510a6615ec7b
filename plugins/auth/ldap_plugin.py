"""Entry point of the ``ldap`` login provider: its options and registration. Imports nothing heavy; ``ldap3`` is
loaded only when a provider is built."""

from __future__ import annotations

from simpletuner.core.hookspecs import RegisterAuthProvider, hookimpl
from simpletuner.core.specs import AuthProviderSpec, lazy
from simpletuner.plugins.auth.ldap_options import LdapOptions

__all__ = ["LdapOptions", "register_auth_providers"]


@hookimpl
def register_auth_providers(register: RegisterAuthProvider) -> None:
    """Register the LDAP password provider."""
    register(
        AuthProviderSpec(
            name="ldap",
            title="LDAP",
            description="Log in with a directory account (OpenLDAP, Active Directory, FreeIPA); groups map to levels.",
            style="password",
            options=LdapOptions,
            factory=lazy("simpletuner.plugins.auth.ldap:LdapAuthProvider"),
        )
    )
