"""The ``ldap`` provider against a real OpenLDAP server with a seeded directory."""

from __future__ import annotations

import attrs
import pytest
from slapd_server import GROUPS, PEOPLE, READER_DN, READER_PASSWORD, USERS, Slapd
from tls_certs import TlsFiles

from simpletuner.core.errors import ConfigError
from simpletuner.core.interfaces import ExternalIdentity
from simpletuner.plugins.auth.ldap import LdapAuthProvider, LdapError
from simpletuner.plugins.auth.ldap_plugin import LdapOptions


def _options(url: str, **changes: object) -> LdapOptions:
    base = LdapOptions(ldap_server_url=url, ldap_bind_dn=READER_DN, ldap_bind_password=READER_PASSWORD,
                       ldap_user_search_base=PEOPLE, ldap_group_search_base=GROUPS, ldap_connect_timeout=3)
    return attrs.evolve(base, **changes)


@pytest.fixture
def provider(slapd_server: Slapd) -> LdapAuthProvider:
    return LdapAuthProvider(_options(slapd_server.url))


def test_valid_credentials_give_the_directory_identity_with_groups(provider: LdapAuthProvider) -> None:
    assert provider.authenticate("ada", "ada-password") == ExternalIdentity(
        username="ada", email="ada@example.org", display_name="Ada Lovelace", groups=("admins", "ml-team"))
    assert provider.authenticate("carol", "carol-password") == ExternalIdentity(
        username="carol", email="carol@example.org", display_name="Carol Shaw", groups=())


def test_wrong_password_unknown_user_and_empty_password_are_refused(provider: LdapAuthProvider) -> None:
    assert provider.authenticate("ada", "bob-password") is None
    assert provider.authenticate("ada", "ADA-PASSWORD") is None
    assert provider.authenticate("nobody", "ada-password") is None
    # A DN with an empty password is an anonymous bind that LDAP reports as a success.
    assert provider.authenticate("ada", "") is None
    assert provider.authenticate("", "ada-password") is None


@pytest.mark.parametrize("username", ["*", "a*", ")(uid=*", "*)(uid=*))(|(uid=*", "ada)(|(uid=*", "ada\x00",
                                      "\\2a", "ada)(objectClass=*"])
def test_filter_metacharacters_in_usernames_match_nothing(provider: LdapAuthProvider, username: str) -> None:
    for password, *_ in USERS.values():
        assert provider.authenticate(username, password) is None


def test_usernames_holding_filter_metacharacters_log_in_once_escaped(provider: LdapAuthProvider) -> None:
    identity = provider.authenticate("paren(thesis)", "paren-password")
    assert identity is not None
    assert (identity.username, identity.groups) == ("paren(thesis)", ("ml-team",))


def test_username_comes_back_as_the_directory_spells_it(provider: LdapAuthProvider) -> None:
    # uid matching is case-insensitive in the schema; the identity carries the stored spelling.
    identity = provider.authenticate("ADA", "ada-password")
    assert identity is not None and identity.username == "ada"


def test_without_a_service_account_groups_are_read_with_the_users_own_bind(slapd_server: Slapd) -> None:
    # The seeded ACL lets anonymous binds search people but not groups.
    provider = LdapAuthProvider(_options(slapd_server.url, ldap_bind_dn=None, ldap_bind_password=None))
    assert provider.authenticate("bob", "bob-password") == ExternalIdentity(
        username="bob", email="bob@example.org", display_name="Bob Builder", groups=("ml-team",))
    assert provider.authenticate("bob", "nope") is None


def test_group_lookup_is_optional_and_filters_may_use_the_username(slapd_server: Slapd) -> None:
    no_groups = LdapAuthProvider(_options(slapd_server.url, ldap_group_search_base=None))
    assert no_groups.authenticate("ada", "ada-password").groups == ()  # type: ignore[union-attr]
    by_name = LdapAuthProvider(_options(slapd_server.url, ldap_group_filter="(&(cn=adm*)(member=uid={username},"
                                        + PEOPLE + "))"))
    assert by_name.authenticate("ada", "ada-password").groups == ("admins",)  # type: ignore[union-attr]


def test_a_filter_matching_several_users_refuses_the_login(slapd_server: Slapd) -> None:
    provider = LdapAuthProvider(_options(slapd_server.url, ldap_user_filter="(|(uid={username})(uid=bob))"))
    assert provider.authenticate("ada", "ada-password") is None


def test_unreachable_server_raises_a_clear_error(slapd_server: Slapd) -> None:
    import socket

    with socket.socket() as sock:  # a port with nobody listening
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    provider = LdapAuthProvider(_options(f"ldap://127.0.0.1:{port}"))
    with pytest.raises(LdapError, match=rf"cannot reach the LDAP server at ldap://127.0.0.1:{port}.*ldap_server_url"):
        provider.authenticate("ada", "ada-password")
    with pytest.raises(LdapError, match="cannot reach"):
        provider.test_connection()


def test_starttls_against_a_server_without_tls_is_an_error_not_plaintext(slapd_server: Slapd) -> None:
    provider = LdapAuthProvider(_options(slapd_server.url, ldap_start_tls=True))
    with pytest.raises(LdapError, match="refused StartTLS"):
        provider.authenticate("ada", "ada-password")


def test_wrong_service_password_and_missing_bases_are_reported(slapd_server: Slapd) -> None:
    with pytest.raises(LdapError, match="refused the bind as cn=reader.*invalidCredentials.*ldap_bind_password"):
        LdapAuthProvider(_options(slapd_server.url, ldap_bind_password="wrong")).test_connection()
    missing = "ou=nowhere,dc=example,dc=org"
    with pytest.raises(LdapError, match="user search base 'ou=nowhere,dc=example,dc=org' does not exist"):
        LdapAuthProvider(_options(slapd_server.url, ldap_user_search_base=missing)).test_connection()
    with pytest.raises(LdapError, match="group search base"):
        LdapAuthProvider(_options(slapd_server.url, ldap_group_search_base=missing)).authenticate("ada", "ada-password")


def test_test_connection_summarises_the_setup(provider: LdapAuthProvider, slapd_server: Slapd) -> None:
    summary = provider.test_connection()
    assert summary.startswith(f"{slapd_server.url} (no TLS): bound as {READER_DN}")
    assert PEOPLE in summary and GROUPS in summary


def test_starttls_and_ldaps_with_the_right_ca(slapd_tls_server: Slapd, tls_files: TlsFiles) -> None:
    assert slapd_tls_server.ldaps_url
    ldaps_port = slapd_tls_server.ldaps_url.rsplit(":", 1)[1]
    start_tls = LdapAuthProvider(_options(f"ldap://localhost:{slapd_tls_server.port}", ldap_start_tls=True,
                                          ldap_ca_file=str(tls_files.ca_file)))
    assert start_tls.authenticate("ada", "ada-password").groups == ("admins", "ml-team")  # type: ignore[union-attr]
    assert "(StartTLS)" in start_tls.test_connection()
    ldaps = LdapAuthProvider(_options(f"ldaps://localhost:{ldaps_port}", ldap_ca_file=str(tls_files.ca_file)))
    assert ldaps.authenticate("bob", "bob-password").username == "bob"  # type: ignore[union-attr]
    assert ldaps.authenticate("bob", "wrong") is None


def test_untrusted_or_misnamed_certificates_are_refused(slapd_tls_server: Slapd, tls_files: TlsFiles) -> None:
    assert slapd_tls_server.ldaps_url
    ldaps_port = slapd_tls_server.ldaps_url.rsplit(":", 1)[1]
    ca = str(tls_files.ca_file)
    untrusted = LdapAuthProvider(_options(f"ldaps://localhost:{ldaps_port}"))
    with pytest.raises(LdapError, match="could not be verified.*ldap_ca_file"):
        untrusted.authenticate("ada", "ada-password")
    untrusted_start_tls = LdapAuthProvider(_options(f"ldap://localhost:{slapd_tls_server.port}",
                                                    ldap_start_tls=True))
    with pytest.raises(LdapError, match="could not be verified"):
        untrusted_start_tls.authenticate("ada", "ada-password")
    # The certificate names only "localhost".
    misnamed = LdapAuthProvider(_options(f"ldaps://127.0.0.1:{ldaps_port}", ldap_ca_file=ca))
    with pytest.raises(LdapError, match="not valid for the host name '127.0.0.1'"):
        misnamed.authenticate("ada", "ada-password")
    unverified = LdapAuthProvider(_options(f"ldaps://127.0.0.1:{ldaps_port}", ldap_verify_certificate=False))
    assert "certificate NOT verified" in unverified.test_connection()


def test_bad_options_are_listed_together(tmp_path) -> None:  # type: ignore[no-untyped-def]
    bad = LdapOptions(ldap_server_url="http://ldap.example.org", ldap_ca_file=str(tmp_path / "missing.pem"),
                      ldap_bind_dn="cn=reader,dc=example,dc=org", ldap_user_filter="uid={user}",
                      ldap_group_search_base="ou=groups", ldap_group_filter="(member={dn}",
                      ldap_email_attribute="mail)(", ldap_connect_timeout=0)
    with pytest.raises(ConfigError) as caught:
        LdapAuthProvider(bad)
    text = str(caught.value)
    for key in ("ldap_server_url", "ldap_ca_file", "ldap_bind_password", "ldap_user_search_base", "ldap_user_filter",
                "ldap_group_filter", "ldap_email_attribute", "ldap_connect_timeout"):
        assert f"$.{key}:" in text, key
    assert "unknown placeholder(s) {user}" in text
    with pytest.raises(ConfigError, match="ldap_start_tls: ldaps:// is already encrypted"):
        LdapAuthProvider(LdapOptions(ldap_server_url="ldaps://h", ldap_start_tls=True, ldap_user_search_base="o=x"))
