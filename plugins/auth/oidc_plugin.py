"""Entry point of the ``oidc`` login provider (OpenID Connect single sign-on): its options and registration.
Imports nothing heavy; the HTTP and JWT libraries are loaded only when a provider is built."""

from __future__ import annotations

from simpletuner.core.hookspecs import RegisterAuthProvider, hookimpl
from simpletuner.core.specs import AuthProviderSpec, lazy
from simpletuner.plugins.auth.oidc_options import OidcOptions

__all__ = ["OidcOptions", "register_auth_providers"]


@hookimpl
def register_auth_providers(register: RegisterAuthProvider) -> None:
    """Register the OpenID Connect redirect provider."""
    register(
        AuthProviderSpec(
            name="oidc",
            title="OpenID Connect",
            description="Single sign-on through an OpenID Connect provider (Keycloak, Okta, Entra ID, Google, ...).",
            style="redirect",
            options=OidcOptions,
            factory=lazy("simpletuner.plugins.auth.oidc:OidcAuthProvider"),
        )
    )
