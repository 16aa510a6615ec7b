"""OpenID Connect login: the authorization-code flow with PKCE (S256), state and nonce.

:meth:`OidcAuthProvider.begin` builds the provider URL and the values the server keeps for the callback;
:meth:`OidcAuthProvider.complete` checks the state, redeems the code with the PKCE verifier, verifies the ID token
against the provider's key set and fills missing claims from the userinfo endpoint.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import logging
import os
import re
import secrets
import ssl
import threading
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import httpx

from simpletuner.core.errors import ConfigError, SimpleTunerError
from simpletuner.core.interfaces.auth_provider import (
    AccountStore,
    ExternalIdentity,
    RedirectAuthProvider,
    RedirectStart,
)
from simpletuner.plugins.auth.oidc_options import OidcOptions
from simpletuner.plugins.auth.oidc_tokens import TokenRefused, UnknownKey, claim_path, group_names, verify_id_token

_log = logging.getLogger(__name__)

DISCOVERY_PATH = "/.well-known/openid-configuration"
#: How long a discovery document and key set are reused before being read again.
CACHE_SECONDS = 3600.0
#: The least time between two key set reads forced by unknown keys (forged tokens must not hammer the provider).
JWKS_REFRESH_SECONDS = 60.0
#: How long a started login may take before its callback is refused.
LOGIN_SECONDS = 15 * 60
_SCOPE = re.compile(r"^[\x21\x23-\x5b\x5d-\x7e]+$")  # RFC 6749 §3.3 scope-token characters
_STATE_KEYS = ("state", "nonce", "code_verifier", "redirect_uri", "started_at")


class OidcError(SimpleTunerError):
    """The identity provider could not be used; the message names the URL, what failed and what to check."""


def _is_loopback(host: str | None) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host or "").is_loopback
    except ValueError:
        return False


def _url_problem(url: str) -> str | None:
    """Why ``url`` cannot be a provider URL, or None. Plain http is allowed only on loopback (tests, tunnels)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"{url!r} is not an http(s) URL"
    if parts.scheme == "http" and not _is_loopback(parts.hostname):
        return f"{url!r} uses plain http; OpenID Connect needs https (http is allowed only on loopback)"
    return None


def validate_options(options: OidcOptions) -> list[str]:
    """Every problem in ``options`` as a ``$.key: what is wrong and how to fix it`` line."""
    problems = []
    issuer = options.oidc_issuer.strip()
    if not issuer:
        problems.append("$.oidc_issuer: required, e.g. https://login.example.org/realms/ml")
    elif problem := _url_problem(issuer):
        problems.append(f"$.oidc_issuer: {problem}")
    if not options.oidc_client_id.strip():
        problems.append("$.oidc_client_id: required; register this server as a client at the provider")
    scopes = options.oidc_scopes.split()
    if "openid" not in scopes:
        problems.append("$.oidc_scopes: must include openid, e.g. 'openid email profile'")
    bad = [s for s in scopes if not _SCOPE.match(s)]
    if bad:
        problems.append(f"$.oidc_scopes: invalid scope(s) {', '.join(map(repr, bad))}; separate scopes by spaces")
    for key in ("oidc_username_claim", "oidc_groups_claim"):
        if not getattr(options, key).strip():
            problems.append(f"$.{key}: required (a claim name such as preferred_username or groups)")
    if options.oidc_ca_file and not os.path.isfile(options.oidc_ca_file):
        problems.append(f"$.oidc_ca_file: {options.oidc_ca_file!r} is not a file; give the CA certificate's PEM path")
    if not 0.5 <= options.oidc_timeout <= 120:
        problems.append("$.oidc_timeout: must be between 0.5 and 120 seconds")
    return problems


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _with_query(url: str, params: Mapping[str, str]) -> str:
    """``url`` with ``params`` added to the query it may already have."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True) + list(params.items())
    return urlunsplit(parts._replace(query=urlencode(query)))


class OidcAuthProvider(RedirectAuthProvider):
    """Single sign-on through an OpenID Connect provider.

    Example (against a reachable provider)::

        provider = OidcAuthProvider(OidcOptions(oidc_issuer="https://idp.example.org", oidc_client_id="tuner"))
        start = provider.begin("https://tuner.example.org/auth/oidc/callback")   # redirect to start.url
        identity = provider.complete(callback_query_params, start.state)        # ExternalIdentity or None
    """

    def __init__(self, options: OidcOptions, accounts: AccountStore | None = None) -> None:
        # ``accounts`` (the server's local accounts) goes unused: these accounts live in the directory or provider
        problems = validate_options(options)
        if problems:
            raise ConfigError(problems, source="OpenID Connect provider options")
        self.options = options
        issuer = options.oidc_issuer.strip()
        if issuer.endswith(DISCOVERY_PATH):
            issuer = issuer[: -len(DISCOVERY_PATH)]
        self.issuer = issuer.rstrip("/")
        self.discovery_url = self.issuer + DISCOVERY_PATH
        self._verify: ssl.SSLContext | bool = (
            ssl.create_default_context(cafile=options.oidc_ca_file) if options.oidc_ca_file else True
        )
        self._lock = threading.Lock()
        self._discovery: tuple[float, dict[str, Any]] | None = None
        self._jwks: tuple[float, dict[str, Any]] | None = None

    # -- talking to the provider -------------------------------------------------------------------------------

    def _client(self) -> httpx.Client:
        return httpx.Client(timeout=self.options.oidc_timeout, verify=self._verify, follow_redirects=False)

    def _send(self, what: str, method: str, url: str, **kwargs: Any) -> httpx.Response:
        try:
            with self._client() as client:
                return client.request(method, url, **kwargs)
        except httpx.HTTPError as exc:
            reason = str(exc) or type(exc).__name__
            hint = "set oidc_ca_file to the CA that signed it" if "CERTIFICATE" in reason.upper() else \
                "check oidc_issuer and that the provider is reachable from this server"
            raise OidcError(f"cannot reach the OpenID Connect provider's {what} at {url}: {reason}; {hint}") from exc

    def _get_json(self, what: str, url: str, **kwargs: Any) -> dict[str, Any]:
        response = self._send(what, "GET", url, **kwargs)
        if response.status_code != 200:
            raise OidcError(f"the provider's {what} at {url} answered HTTP {response.status_code}: "
                            f"{response.text[:200]}")
        try:
            data = response.json()
        except ValueError as exc:
            raise OidcError(f"the provider's {what} at {url} is not JSON") from exc
        if not isinstance(data, dict):
            raise OidcError(f"the provider's {what} at {url} is not a JSON object")
        return data

    def discovery(self) -> dict[str, Any]:
        """The provider's discovery document, read once an hour and checked for what this flow needs."""
        with self._lock:
            if self._discovery and time.monotonic() - self._discovery[0] < CACHE_SECONDS:
                return self._discovery[1]
        doc = self._get_json("discovery document", self.discovery_url)
        if str(doc.get("issuer", "")).rstrip("/") != self.issuer:
            raise OidcError(f"the discovery document at {self.discovery_url} names issuer {doc.get('issuer')!r}, "
                            f"not {self.issuer!r}; set oidc_issuer to exactly the provider's issuer")
        for key in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
            if not isinstance(doc.get(key), str) or (problem := _url_problem(doc[key])):
                raise OidcError(f"the discovery document at {self.discovery_url} has no usable {key}"
                                + (f": {problem}" if doc.get(key) else ""))
        response_types = doc.get("response_types_supported")
        if isinstance(response_types, list) and "code" not in response_types:
            raise OidcError(f"the provider at {self.issuer} does not offer the authorization-code flow")
        with self._lock:
            self._discovery = (time.monotonic(), doc)
        return doc

    def _key_set(self, refresh: bool = False) -> dict[str, Any]:
        """The provider's key set, cached; ``refresh`` re-reads it unless it was read under a minute ago."""
        with self._lock:
            cached = self._jwks
        if cached:
            age = time.monotonic() - cached[0]
            if age < (JWKS_REFRESH_SECONDS if refresh else CACHE_SECONDS):
                return cached[1]
        jwks = self._get_json("key set", self.discovery()["jwks_uri"])
        if not isinstance(jwks.get("keys"), list):
            raise OidcError(f"the provider's key set at {self.discovery()['jwks_uri']} has no 'keys' list")
        with self._lock:
            self._jwks = (time.monotonic(), jwks)
        return jwks

    # -- RedirectAuthProvider ----------------------------------------------------------------------------------

    def begin(self, redirect_uri: str) -> RedirectStart:
        """The provider's authorization URL and the values (state, nonce, PKCE verifier) to keep until the
        callback."""
        parts = urlsplit(redirect_uri)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise OidcError(f"redirect URI {redirect_uri!r} is not an absolute http(s) URL")
        state, nonce = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        verifier = secrets.token_urlsafe(64)  # 86 characters, within RFC 7636's 43-128
        params = {
            "response_type": "code",
            "client_id": self.options.oidc_client_id,
            "redirect_uri": redirect_uri,
            "scope": " ".join(self.options.oidc_scopes.split()),
            "state": state,
            "nonce": nonce,
            "code_challenge": _b64url(hashlib.sha256(verifier.encode()).digest()),
            "code_challenge_method": "S256",
        }
        url = _with_query(self.discovery()["authorization_endpoint"], params)
        kept = {"state": state, "nonce": nonce, "code_verifier": verifier, "redirect_uri": redirect_uri,
                "started_at": str(int(time.time()))}
        return RedirectStart(url=url, state=kept)

    def complete(self, params: Mapping[str, str], state: Mapping[str, str]) -> ExternalIdentity | None:
        """The verified identity from the callback's ``params``, or None when the login is refused (denied,
        wrong state, expired or replayed code, bad token). Raises :class:`OidcError` when the provider fails."""
        if any(not isinstance(state.get(key), str) for key in _STATE_KEYS):
            _log.warning("OIDC callback refused: the kept login state is incomplete")
            return None
        # A repeated query parameter arrives as a list from some frameworks: only single values are accepted.
        if any(not isinstance(params.get(key, ""), str) for key in ("error", "state", "code")):
            _log.warning("OIDC callback refused: repeated or malformed parameters")
            return None
        if params.get("error"):
            _log.info("OIDC provider refused the login: %s %s", params.get("error"), params.get("error_description"))
            return None
        returned = params.get("state") or ""
        if not hmac.compare_digest(returned.encode(), state["state"].encode()):
            _log.warning("OIDC callback refused: state does not match the login this browser started")
            return None
        if not state["started_at"].isdigit() or time.time() - int(state["started_at"]) > LOGIN_SECONDS:
            _log.info("OIDC callback refused: the login was started too long ago")
            return None
        code = params.get("code")
        if not code:
            return None
        tokens = self._redeem(code, state)
        if tokens is None:
            return None
        claims = self._verified_claims(str(tokens.get("id_token") or ""), state["nonce"])
        if claims is None:
            return None
        return self._identity(claims, tokens.get("access_token"))

    def _redeem(self, code: str, state: Mapping[str, str]) -> dict[str, Any] | None:
        """Exchange the code for tokens; None when the provider says the grant is invalid."""
        doc = self.discovery()
        form = {"grant_type": "authorization_code", "code": code, "redirect_uri": state["redirect_uri"],
                "code_verifier": state["code_verifier"], "client_id": self.options.oidc_client_id}
        headers = {"Accept": "application/json"}
        secret = self.options.oidc_client_secret
        if secret:
            methods = doc.get("token_endpoint_auth_methods_supported") or ["client_secret_basic"]
            if "client_secret_basic" in methods or "client_secret_post" not in methods:
                # RFC 6749 §2.3.1: both halves are form-encoded before the Basic encoding.
                pair = f"{quote(self.options.oidc_client_id, safe='')}:{quote(secret, safe='')}"
                headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
            else:
                form["client_secret"] = secret
        response = self._send("token endpoint", "POST", doc["token_endpoint"], data=form, headers=headers)
        try:
            body = response.json()
        except ValueError:
            body = {}
        body = body if isinstance(body, dict) else {}
        if response.status_code == 400 and body.get("error") == "invalid_grant":
            _log.info("OIDC code refused by the provider: %s", body.get("error_description"))
            return None
        if response.status_code != 200:
            hint = "; check oidc_client_id and oidc_client_secret" if body.get("error") in (
                "invalid_client", "unauthorized_client") else ""
            raise OidcError(f"the provider's token endpoint answered HTTP {response.status_code} "
                            f"{body.get('error', '')} {body.get('error_description', '')}".rstrip() + hint)
        if not body.get("id_token"):
            raise OidcError("the provider's token response holds no id_token; check that oidc_scopes has openid")
        return body

    def _verified_claims(self, id_token: str, nonce: str) -> dict[str, Any] | None:
        algorithms = self.discovery().get("id_token_signing_alg_values_supported")
        kwargs: dict[str, Any] = {
            "issuer": self.discovery()["issuer"], "client_id": self.options.oidc_client_id, "nonce": nonce,
            "allowed_algorithms": algorithms if isinstance(algorithms, list) else None,
        }
        try:
            try:
                return verify_id_token(id_token, jwks=self._key_set(), **kwargs)
            except UnknownKey:
                # The provider may have rotated its keys since the set was read.
                return verify_id_token(id_token, jwks=self._key_set(refresh=True), **kwargs)
        except TokenRefused as exc:
            _log.warning("OIDC login refused: %s", exc)
            return None

    def _identity(self, claims: dict[str, Any], access_token: Any) -> ExternalIdentity | None:
        opts = self.options
        wanted = (opts.oidc_username_claim, opts.oidc_groups_claim, "email", "name")
        userinfo_url = self.discovery().get("userinfo_endpoint")
        if any(claim_path(claims, c) is None for c in wanted) and isinstance(userinfo_url, str) and access_token:
            info = self._get_json("userinfo endpoint", userinfo_url,
                                  headers={"Authorization": f"Bearer {access_token}", "Accept": "application/json"})
            # Userinfo about someone else must not fill in this user's claims (OpenID Connect Core §5.3.2).
            if info.get("sub") != claims["sub"]:
                _log.warning("OIDC login refused: userinfo describes another subject")
                return None
            claims = {**info, **claims}
        username = claim_path(claims, opts.oidc_username_claim)
        if not isinstance(username, str) or not username.strip():
            username = str(claims["sub"])  # the subject is stable and unique at one issuer
        email = claims.get("email")
        # An address the provider has not verified must not be trusted to link accounts.
        if not isinstance(email, str) or claims.get("email_verified") is False:
            email = None
        name = claims.get("name")
        return ExternalIdentity(
            username=username.strip(),
            email=email,
            display_name=name if isinstance(name, str) and name else None,
            groups=group_names(claim_path(claims, opts.oidc_groups_claim)),
        )

    def test_connection(self) -> str:
        """Read the discovery document and key set; summarise what the provider offers."""
        with self._lock:  # read both afresh: the point is to check the provider as it is now
            self._discovery = None
            self._jwks = None
        doc = self.discovery()
        jwks = self._key_set()
        signing = [k for k in jwks["keys"] if isinstance(k, dict) and k.get("use", "sig") == "sig"]
        if not signing:
            raise OidcError(f"the provider's key set at {doc['jwks_uri']} holds no signing keys")
        algorithms = doc.get("id_token_signing_alg_values_supported") or ["RS256"]
        userinfo = "userinfo endpoint" if doc.get("userinfo_endpoint") else "no userinfo endpoint"
        return (f"{self.issuer}: {len(signing)} signing key(s), ID tokens signed with {', '.join(algorithms)}; "
                f"{userinfo}")
