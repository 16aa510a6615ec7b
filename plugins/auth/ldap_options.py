"""Options of the ``ldap`` login provider, shared by its entry module and its implementation."""

from __future__ import annotations

import attrs

from simpletuner.core.options import PATH, PRIVILEGED, option

_SECTION = "environment"


@attrs.define
class LdapOptions:
    """How to reach the directory, find a user and their groups."""

    ldap_server_url: str = option(
        "ldap://localhost:389", section=_SECTION, label="Server URL",
        help="ldap://host:port, or ldaps://host:port for TLS from the first byte.", trust=PRIVILEGED,
    )
    ldap_start_tls: bool = option(
        False, section=_SECTION, label="Use StartTLS",
        help="Upgrade an ldap:// connection to TLS before sending any password (not with ldaps://).",
    )
    ldap_verify_certificate: bool = option(
        True, section=_SECTION, label="Verify certificate",
        help="Check the server's TLS certificate and host name; turn off only for testing.",
    )
    ldap_ca_file: str | None = option(
        None, section=_SECTION, label="CA file",
        help="PEM file of the CA that signed the server certificate; empty uses the system's trusted CAs.", trust=PATH,
    )
    ldap_bind_dn: str | None = option(
        None, section=_SECTION, label="Bind DN",
        help="Service account used to search for users, e.g. cn=reader,dc=example,dc=org; empty binds anonymously.",
    )
    ldap_bind_password: str | None = option(
        None, section=_SECTION, label="Bind password", secret=True, help="Password of the bind DN.",
    )
    ldap_user_search_base: str = option(
        "", section=_SECTION, label="User search base",
        help="Where users live, e.g. ou=people,dc=example,dc=org (searched with its whole subtree).",
    )
    ldap_user_filter: str = option(
        "(uid={username})", section=_SECTION, label="User filter",
        help="Filter matching exactly one user; {username} is replaced by the escaped login name.",
    )
    ldap_group_search_base: str | None = option(
        None, section=_SECTION, label="Group search base",
        help="Where groups live, e.g. ou=groups,dc=example,dc=org; empty skips group lookup.",
    )
    ldap_group_filter: str = option(
        "(member={dn})", section=_SECTION, label="Group filter",
        help="Filter matching the user's groups; {dn} is the user's DN and {username} their directory username.",
    )
    ldap_username_attribute: str = option(
        "uid", section=_SECTION, label="Username attribute", help="Attribute holding the login name.",
    )
    ldap_email_attribute: str = option(
        "mail", section=_SECTION, label="Email attribute", help="Attribute holding the email address.",
    )
    ldap_display_name_attribute: str = option(
        "cn", section=_SECTION, label="Display name attribute", help="Attribute holding the person's name.",
    )
    ldap_group_name_attribute: str = option(
        "cn", section=_SECTION, label="Group name attribute",
        help="Attribute of a group entry used as the group's name in level mappings.",
    )
    ldap_connect_timeout: float = option(
        5.0, section=_SECTION, label="Timeout (s)", minimum=0.1, maximum=120.0,
        help="Seconds to wait for the connection and for each answer.",
    )

