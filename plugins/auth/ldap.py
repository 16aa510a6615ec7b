"""LDAP login: find the user with a service account, bind as them to check the password, read their groups.

Every value typed by a user is escaped before it reaches a search filter (RFC 4515), so a login name such as ``*``
or ``)(uid=*`` matches only an entry literally named that. An empty password is refused before any bind: LDAP
treats a simple bind with a DN and no password as an anonymous bind that "succeeds" (RFC 4513 §5.1.2).
"""

from __future__ import annotations

import logging
import math
import os
import re
import ssl
from typing import Any
from urllib.parse import urlsplit

import ldap3
from ldap3.core import exceptions as ldap_errors
from ldap3.operation.search import parse_filter
from ldap3.utils.conv import escape_filter_chars

from simpletuner.core.errors import ConfigError, SimpleTunerError
from simpletuner.core.interfaces.auth_provider import AccountStore, ExternalIdentity, PasswordAuthProvider
from simpletuner.plugins.auth.ldap_options import LdapOptions

_log = logging.getLogger(__name__)

_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
# An attribute description: a name (RFC 4512 keystring) or a numeric OID.
_ATTRIBUTE = re.compile(r"^(?:[A-Za-z][A-Za-z0-9-]*|\d+(?:\.\d+)+)$")
_MAX_USERNAME = 256
# Bind results that mean "these credentials are not accepted", as opposed to a failing service.
_REFUSED_BINDS = {"invalidCredentials", "inappropriateAuthentication"}


class LdapError(SimpleTunerError):
    """The directory could not be used; the message names the server, what failed and which option to check."""


def _check_filter(key: str, value: str, allowed: set[str], required: set[str]) -> list[str]:
    """Problems with a filter template: unknown or missing placeholders, or a filter the LDAP grammar rejects."""
    problems = []
    names = set(_PLACEHOLDER.findall(value))
    unknown = names - allowed
    if unknown:
        problems.append(f"$.{key}: unknown placeholder(s) {', '.join(sorted('{' + n + '}' for n in unknown))}; "
                        f"use {' or '.join('{' + n + '}' for n in sorted(allowed))}")
    if required and not names & required:
        problems.append(f"$.{key}: must contain {' or '.join('{' + n + '}' for n in sorted(required))}, "
                        f"e.g. (uid={{username}})")
    sample = _PLACEHOLDER.sub("x", value)
    try:
        parse_filter(sample, None, auto_escape=False, auto_encode=False, validator=None, check_names=False)
    except ldap_errors.LDAPException as exc:
        problems.append(f"$.{key}: {value!r} is not a valid LDAP filter ({exc}); filters look like (uid={{username}})")
    return problems


def validate_options(options: LdapOptions) -> list[str]:
    """Every problem in ``options`` as a ``$.key: what is wrong and how to fix it`` line."""
    problems: list[str] = []
    url = urlsplit(options.ldap_server_url.strip())
    if url.scheme not in ("ldap", "ldaps") or not url.hostname:
        problems.append(f"$.ldap_server_url: {options.ldap_server_url!r} is not an LDAP URL; "
                        "write ldap://host:389 or ldaps://host:636")
    else:
        try:
            url.port  # noqa: B018 - parsing the port validates it
        except ValueError:
            problems.append(f"$.ldap_server_url: {options.ldap_server_url!r} has an invalid port")
        if url.path not in ("", "/") or url.query:
            problems.append("$.ldap_server_url: give only scheme, host and port; set the search bases separately")
    if options.ldap_start_tls and url.scheme == "ldaps":
        problems.append("$.ldap_start_tls: ldaps:// is already encrypted; turn StartTLS off or use ldap://")
    if options.ldap_ca_file and not os.path.isfile(options.ldap_ca_file):
        problems.append(f"$.ldap_ca_file: {options.ldap_ca_file!r} is not a file; give the CA certificate's PEM path")
    if options.ldap_bind_dn and not options.ldap_bind_password:
        problems.append("$.ldap_bind_password: set the password of the bind DN (an empty one binds anonymously)")
    if options.ldap_bind_password and not options.ldap_bind_dn:
        problems.append("$.ldap_bind_dn: a bind password is set but no bind DN")
    if not options.ldap_user_search_base.strip():
        problems.append("$.ldap_user_search_base: required, e.g. ou=people,dc=example,dc=org")
    problems += _check_filter("ldap_user_filter", options.ldap_user_filter, {"username"}, {"username"})
    if options.ldap_group_search_base:
        problems += _check_filter("ldap_group_filter", options.ldap_group_filter, {"dn", "username"},
                                  {"dn", "username"})
    for key in ("ldap_username_attribute", "ldap_email_attribute", "ldap_display_name_attribute",
                "ldap_group_name_attribute"):
        value = getattr(options, key)
        if not _ATTRIBUTE.match(value or ""):
            problems.append(f"$.{key}: {value!r} is not an attribute name (letters, digits and '-', e.g. mail)")
    if not 0 < options.ldap_connect_timeout <= 120:
        problems.append("$.ldap_connect_timeout: must be between 0.1 and 120 seconds")
    return problems


def _fill(template: str, **values: str) -> str:
    """Substitute placeholders with filter-escaped values (never ``str.format``: a ``{`` in a value is data)."""
    return _PLACEHOLDER.sub(lambda m: escape_filter_chars(values[m.group(1)]), template)


def _first(attributes: Any, name: str) -> str | None:
    value = attributes.get(name) if attributes is not None else None
    if isinstance(value, list | tuple):
        value = value[0] if value else None
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    return str(value) if value not in (None, "") else None


def _close(conn: ldap3.Connection) -> None:
    """Unbind, ignoring a socket the server or a failed TLS handshake already broke."""
    try:
        conn.unbind()
    except (ldap_errors.LDAPException, OSError):
        pass


class LdapAuthProvider(PasswordAuthProvider):
    """Password login against an LDAP directory.

    Example (against a reachable directory)::

        provider = LdapAuthProvider(LdapOptions(ldap_server_url="ldaps://ldap.example.org",
                                                ldap_user_search_base="ou=people,dc=example,dc=org",
                                                ldap_group_search_base="ou=groups,dc=example,dc=org"))
        provider.authenticate("ada", "secret")  # ExternalIdentity('ada', 'ada@example.org', 'Ada', ('ml',))
    """

    def __init__(self, options: LdapOptions, accounts: AccountStore | None = None) -> None:
        # ``accounts`` (the server's local accounts) goes unused: these accounts live in the directory or provider
        problems = validate_options(options)
        if problems:
            raise ConfigError(problems, source="LDAP provider options")
        self.options = options
        url = urlsplit(options.ldap_server_url.strip())
        self._use_ssl = url.scheme == "ldaps"
        self._host = url.hostname or ""
        self._port = url.port or (636 if self._use_ssl else 389)
        self._url = f"{url.scheme}://{url.netloc}"

    # -- connections -------------------------------------------------------------------------------------------

    def _server(self) -> ldap3.Server:
        tls = None
        if self._use_ssl or self.options.ldap_start_tls:
            tls = ldap3.Tls(
                validate=ssl.CERT_REQUIRED if self.options.ldap_verify_certificate else ssl.CERT_NONE,
                ca_certs_file=self.options.ldap_ca_file or None,
                # SNI also makes the server present the right certificate on shared hosts.
                sni=self._host,
            )
        return ldap3.Server(self._host, port=self._port, use_ssl=self._use_ssl, tls=tls, get_info=ldap3.NONE,
                            connect_timeout=self.options.ldap_connect_timeout)

    def _open(self, who: str | None, password: str | None) -> tuple[ldap3.Connection, str]:
        """An open (TLS-upgraded when asked) connection and the bind result's description, bound as ``who``.

        Raises :class:`LdapError` when the server cannot be reached or TLS cannot be set up.
        """
        conn = ldap3.Connection(
            self._server(), user=who, password=password,
            authentication=ldap3.SIMPLE if who else ldap3.ANONYMOUS,
            auto_bind=ldap3.AUTO_BIND_NONE,
            # ldap3 packs this into SO_RCVTIMEO as whole seconds.
            receive_timeout=max(1, math.ceil(self.options.ldap_connect_timeout)),
            # Referrals would send the user's password on to servers nobody configured.
            read_only=True, raise_exceptions=False, auto_referrals=False,
        )
        try:
            conn.open()
            if self.options.ldap_start_tls:
                conn.start_tls(read_server_info=False)
            conn.bind()
        except ldap_errors.LDAPStartTLSError as exc:
            _close(conn)
            if "wrap socket" in str(exc):
                raise self._tls_error(exc) from exc
            raise LdapError(
                f"the LDAP server at {self._url} refused StartTLS ({exc}); configure TLS on the server, "
                "or use ldaps:// if it only offers that"
            ) from exc
        except (ldap_errors.LDAPCertificateError, ldap_errors.LDAPSSLConfigurationError, ssl.SSLError) as exc:
            _close(conn)
            raise self._tls_error(exc) from exc
        except ldap_errors.LDAPSocketOpenError as exc:
            _close(conn)
            if "ssl" in str(exc).lower() or "certificate" in str(exc).lower():
                raise self._tls_error(exc) from exc
            raise LdapError(
                f"cannot reach the LDAP server at {self._url}: {exc}; check ldap_server_url and that the server is "
                "running and reachable from this machine"
            ) from exc
        except ldap_errors.LDAPCommunicationError as exc:
            _close(conn)
            raise LdapError(f"lost the connection to the LDAP server at {self._url}: {exc}") from exc
        return conn, str(conn.result.get("description", "")) if conn.result else ""

    def _tls_error(self, exc: Exception) -> LdapError:
        text = str(exc)
        if "doesn't match" in text:
            reason = f"its certificate is not valid for the host name {self._host!r}"
            fix = "use a host name the certificate names in ldap_server_url"
        elif "CERTIFICATE_VERIFY_FAILED" in text:
            detail = text.split("certificate verify failed:", 1)[-1].split("(_ssl", 1)[0].strip(" :'\",()")
            reason = f"its certificate could not be verified ({detail})"
            fix = "set ldap_ca_file to the PEM file of the CA that signed it"
        else:
            reason, fix = text, "check the server's TLS setup, ldap_ca_file and ldap_verify_certificate"
        return LdapError(f"TLS with the LDAP server at {self._url} failed: {reason}; {fix}")

    def _service_connection(self) -> ldap3.Connection:
        conn, outcome = self._open(self.options.ldap_bind_dn or None, self.options.ldap_bind_password or None)
        if not conn.bound:
            _close(conn)
            who = self.options.ldap_bind_dn or "anonymous"
            raise LdapError(f"the LDAP server at {self._url} refused the bind as {who} ({outcome or 'no answer'}); "
                            "check ldap_bind_dn and ldap_bind_password")
        return conn

    def _search(self, conn: ldap3.Connection, base: str, search_filter: str, attributes: list[str],
                what: str, size_limit: int = 0, scope: str = ldap3.SUBTREE) -> list[dict[str, Any]]:
        conn.search(base, search_filter, search_scope=scope, attributes=attributes, size_limit=size_limit)
        outcome = str(conn.result.get("description", ""))
        if outcome == "noSuchObject":
            who = self.options.ldap_bind_dn or "an anonymous bind"
            raise LdapError(f"the {what} {base!r} does not exist on {self._url}, or {who} may not read it; "
                            "check the search base option and the directory's access rules")
        # A size limit reached still returns the entries read so far.
        if outcome not in ("success", "sizeLimitExceeded"):
            raise LdapError(f"searching the {what} {base!r} on {self._url} failed: {outcome} "
                            f"{conn.result.get('message', '')}".rstrip())
        return [e for e in conn.response or [] if e.get("type") == "searchResEntry"]

    # -- PasswordAuthProvider ----------------------------------------------------------------------------------

    def authenticate(self, username: str, password: str) -> ExternalIdentity | None:
        """The directory identity for valid credentials, None for wrong ones; :class:`LdapError` if the
        directory cannot be used."""
        if not username or not username.strip() or len(username) > _MAX_USERNAME or "\x00" in username:
            return None
        if not password or "\x00" in password:
            return None
        opts = self.options
        service = self._service_connection()
        try:
            wanted = [opts.ldap_username_attribute, opts.ldap_email_attribute, opts.ldap_display_name_attribute]
            entries = self._search(service, opts.ldap_user_search_base,
                                   _fill(opts.ldap_user_filter, username=username), wanted,
                                   "user search base", size_limit=2)
            if len(entries) != 1:
                if entries:
                    _log.warning("LDAP user filter matched several entries for %r; refusing the login", username)
                return None
            entry = entries[0]
            user_conn, outcome = self._open(entry["dn"], password)
            try:
                if not user_conn.bound:
                    if outcome in _REFUSED_BINDS:
                        return None
                    raise LdapError(f"the LDAP server at {self._url} could not check the password of "
                                    f"{entry['dn']}: {outcome}")
                attributes = entry.get("attributes")
                canonical = _first(attributes, opts.ldap_username_attribute) or username
                # Without a service account the user's own bind is the one allowed to read groups.
                groups = self._groups(service if opts.ldap_bind_dn else user_conn, entry["dn"], canonical)
            finally:
                _close(user_conn)
        finally:
            _close(service)
        return ExternalIdentity(
            username=canonical,
            email=_first(attributes, opts.ldap_email_attribute),
            display_name=_first(attributes, opts.ldap_display_name_attribute),
            groups=groups,
        )

    def _groups(self, conn: ldap3.Connection, dn: str, username: str) -> tuple[str, ...]:
        opts = self.options
        if not opts.ldap_group_search_base:
            return ()
        entries = self._search(conn, opts.ldap_group_search_base,
                               _fill(opts.ldap_group_filter, dn=dn, username=username),
                               [opts.ldap_group_name_attribute], "group search base")
        names = {_first(e.get("attributes"), opts.ldap_group_name_attribute) for e in entries}
        return tuple(sorted(n for n in names if n))

    def test_connection(self) -> str:
        """Connect, bind with the service account and check that the search bases exist."""
        opts = self.options
        conn = self._service_connection()
        try:
            for base, what in ((opts.ldap_user_search_base, "user search base"),
                               (opts.ldap_group_search_base, "group search base")):
                if base:
                    self._search(conn, base, "(objectClass=*)", [], what, scope=ldap3.BASE)
        finally:
            _close(conn)
        security = "LDAPS" if self._use_ssl else "StartTLS" if opts.ldap_start_tls else "no TLS"
        if security != "no TLS" and not opts.ldap_verify_certificate:
            security += ", certificate NOT verified"
        groups = f", group base {opts.ldap_group_search_base}" if opts.ldap_group_search_base else ", no group lookup"
        return (f"{self._url} ({security}): bound as {opts.ldap_bind_dn or 'anonymous'}; "
                f"user base {opts.ldap_user_search_base}{groups}")
