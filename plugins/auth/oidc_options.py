"""Options of the ``oidc`` login provider, shared by its entry module and its implementation."""

from __future__ import annotations

import attrs

from simpletuner.core.options import PATH, PRIVILEGED, option

_SECTION = "environment"


@attrs.define
class OidcOptions:
    """Where the identity provider is, who this server is to it, and which claims say who the user is."""

    oidc_issuer: str = option(
        "", section=_SECTION, label="Issuer URL",
        help="The provider's issuer, e.g. https://login.example.org/realms/ml; its discovery document is read from "
             "<issuer>/.well-known/openid-configuration (giving that full URL works too).", trust=PRIVILEGED,
    )
    oidc_client_id: str = option(
        "", section=_SECTION, label="Client ID", help="The client ID registered for this server at the provider.",
    )
    oidc_client_secret: str | None = option(
        None, section=_SECTION, label="Client secret", secret=True,
        help="The client secret; empty for a public client (PKCE still protects the code).",
    )
    oidc_scopes: str = option(
        "openid email profile", section=_SECTION, label="Scopes",
        help="Space-separated scopes to ask for; must include openid. Add groups or roles if your provider needs it.",
    )
    oidc_username_claim: str = option(
        "preferred_username", section=_SECTION, label="Username claim",
        help="Claim used as the login name; when the provider sends none, the stable subject (sub) is used.",
    )
    oidc_groups_claim: str = option(
        "groups", section=_SECTION, label="Groups claim",
        help="Claim listing the user's groups or roles; dots reach into objects, e.g. realm_access.roles.",
    )
    oidc_ca_file: str | None = option(
        None, section=_SECTION, label="CA file",
        help="PEM file of the CA that signed the provider's certificate; empty uses the system's trusted CAs.",
        trust=PATH,
    )
    oidc_timeout: float = option(
        10.0, section=_SECTION, label="Timeout (s)", minimum=0.5, maximum=120.0,
        help="Seconds to wait for each request to the provider.",
    )

