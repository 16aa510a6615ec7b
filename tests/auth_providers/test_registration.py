"""The ``ldap`` and ``oidc`` providers reach the server the way any plugin does: through entry points."""

from __future__ import annotations

import subprocess
import sys

from simpletuner.core.options import describe_options
from simpletuner.core.plugins.registry import Registry
from simpletuner.plugins.auth.ldap import LdapAuthProvider
from simpletuner.plugins.auth.ldap_plugin import LdapOptions
from simpletuner.plugins.auth.oidc import OidcAuthProvider
from simpletuner.plugins.auth.oidc_plugin import OidcOptions


def test_both_providers_register_from_their_entry_points_with_options_and_style() -> None:
    specs = Registry().auth_providers()
    ldap, oidc = specs["ldap"], specs["oidc"]
    assert (ldap.style, ldap.options, ldap.provider.entry_point.split(" = ")[1]) == (  # type: ignore[union-attr]
        "password", LdapOptions, "simpletuner.plugins.auth.ldap_plugin")
    assert (oidc.style, oidc.options, oidc.provider.entry_point.split(" = ")[1]) == (  # type: ignore[union-attr]
        "redirect", OidcOptions, "simpletuner.plugins.auth.oidc_plugin")
    built = ldap.build(LdapOptions(ldap_user_search_base="ou=people,dc=example,dc=org"), accounts=None)
    assert isinstance(built, LdapAuthProvider)
    options = OidcOptions(oidc_issuer="https://idp.example.org", oidc_client_id="st")
    assert isinstance(oidc.build(options, accounts=None), OidcAuthProvider)


def test_secrets_are_marked_so_the_server_never_returns_them() -> None:
    for options, secret in ((LdapOptions, {"ldap_bind_password"}), (OidcOptions, {"oidc_client_secret"})):
        infos = describe_options(options, owner="test")
        assert {i.key for i in infos if i.secret} == secret
        assert all(i.section == "environment" and i.help for i in infos)


def test_entry_point_modules_leave_the_protocol_libraries_unloaded() -> None:
    code = (
        "import sys\n"
        "import simpletuner.plugins.auth.ldap_plugin, simpletuner.plugins.auth.oidc_plugin\n"
        "print(','.join(sorted(m for m in ('ldap3', 'jwt', 'httpx', 'cryptography', 'torch') if m in sys.modules)))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == ""
