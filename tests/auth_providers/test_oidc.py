"""The ``oidc`` provider against a real OpenID Connect provider process, through the browser-style redirect flow."""

from __future__ import annotations

import base64
import hashlib
import socket
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from simpletuner.core.errors import ConfigError
from simpletuner.core.interfaces import ExternalIdentity, RedirectStart
from simpletuner.plugins.auth.oidc import DISCOVERY_PATH, OidcAuthProvider, OidcError
from simpletuner.plugins.auth.oidc_plugin import OidcOptions

REDIRECT_URI = "http://127.0.0.1:8001/auth/oidc/callback"


def _provider(issuer: str, cls: type[OidcAuthProvider] = OidcAuthProvider, **changes: Any) -> OidcAuthProvider:
    options = OidcOptions(oidc_issuer=issuer, oidc_client_id="simpletuner", oidc_client_secret="client-secret",
                          oidc_timeout=5)
    for key, value in changes.items():
        setattr(options, key, value)
    return cls(options)


def _query(url: str) -> dict[str, str]:
    return {key: values[0] for key, values in parse_qs(urlsplit(url).query).items()}


def browser_login(start: RedirectStart, sub: str, action: str | None = None) -> dict[str, str]:
    """What a browser does: open the authorize URL, submit the login form, follow the redirect back to us."""
    page = httpx.get(start.url)
    assert page.status_code == 200 and "<form" in page.text
    form = {"sub": sub} | ({"action": action} if action else {})
    answer = httpx.post(start.url, data=form)
    assert answer.status_code == 302, answer.text
    location = answer.headers["location"]
    assert location.startswith(REDIRECT_URI + "?")
    return _query(location)


def test_full_redirect_flow_gives_the_verified_identity(oidc_issuer: str) -> None:
    provider = _provider(oidc_issuer)
    start = provider.begin(REDIRECT_URI)
    params = browser_login(start, "u-ada")
    assert params["state"] == start.state["state"] and params["code"]
    assert provider.complete(params, start.state) == ExternalIdentity(
        username="ada", email="ada@example.org", display_name="Ada Lovelace", groups=("admins", "ml-team"))
    # A code is good for one login only.
    assert provider.complete(params, start.state) is None


def test_authorize_url_carries_pkce_state_and_nonce(oidc_issuer: str) -> None:
    provider = _provider(oidc_issuer, oidc_scopes="openid  email\tprofile")
    first, second = provider.begin(REDIRECT_URI), provider.begin(REDIRECT_URI)
    query = _query(first.url)
    assert first.url.startswith(f"{oidc_issuer}/oauth2/authorize?")
    challenge = base64.urlsafe_b64encode(hashlib.sha256(first.state["code_verifier"].encode()).digest())
    assert query["code_challenge"] == challenge.rstrip(b"=").decode()
    assert query["code_challenge_method"] == "S256"
    assert 43 <= len(first.state["code_verifier"]) <= 128
    assert (query["state"], query["nonce"]) == (first.state["state"], first.state["nonce"])
    assert query["scope"] == "openid email profile"
    assert (query["response_type"], query["client_id"], query["redirect_uri"]) == ("code", "simpletuner",
                                                                                  REDIRECT_URI)
    # Fresh secrets per login.
    for key in ("state", "nonce", "code_verifier"):
        assert first.state[key] != second.state[key]


def test_nested_groups_claim_and_an_unverified_email(oidc_issuer: str) -> None:
    provider = _provider(oidc_issuer, oidc_groups_claim="realm_access.roles")
    start = provider.begin(REDIRECT_URI)
    identity = provider.complete(browser_login(start, "u-bob"), start.state)
    # Bob's address is not verified by the provider, so it is not passed on for account linking.
    assert identity == ExternalIdentity(username="bob", email=None, display_name="Bob Builder", groups=("viewer",))


def test_the_subject_stands_in_for_a_missing_username_claim(oidc_issuer: str) -> None:
    provider = _provider(oidc_issuer, oidc_username_claim="nickname")
    start = provider.begin(REDIRECT_URI)
    identity = provider.complete(browser_login(start, "u-ada"), start.state)
    assert identity is not None and identity.username == "u-ada"


def test_userinfo_fills_claims_the_id_token_lacks(oidc_issuer: str) -> None:
    sub = "u-carol"
    put = httpx.put(f"{oidc_issuer}/users/{sub}", json={"preferred_username": "carol", "email": "c@example.org"})
    assert put.status_code == 204

    class GroupsAddedAfterTheTokenWasIssued(OidcAuthProvider):
        def _redeem(self, code: str, state: Mapping[str, str]) -> dict[str, Any] | None:
            tokens = super()._redeem(code, state)
            assert tokens is not None
            assert "groups" not in jwt.decode(tokens["id_token"], options={"verify_signature": False})
            httpx.put(f"{oidc_issuer}/users/{sub}",
                      json={"preferred_username": "carol", "email": "c@example.org", "groups": ["late-joiners"]})
            return tokens

    provider = _provider(oidc_issuer, GroupsAddedAfterTheTokenWasIssued)
    start = provider.begin(REDIRECT_URI)
    identity = provider.complete(browser_login(start, sub), start.state)
    assert identity is not None and identity.groups == ("late-joiners",) and identity.username == "carol"


def test_tampered_or_missing_state_is_refused_before_the_code_is_used(oidc_issuer: str) -> None:
    provider = _provider(oidc_issuer)
    start = provider.begin(REDIRECT_URI)
    params = browser_login(start, "u-ada")
    assert provider.complete(params | {"state": params["state"][:-1] + "x"}, start.state) is None
    assert provider.complete({"code": params["code"]}, start.state) is None
    assert provider.complete(params | {"state": [params["state"], "x"]}, start.state) is None  # type: ignore[dict-item]
    assert provider.complete(params, {k: v for k, v in start.state.items() if k != "code_verifier"}) is None
    stale = dict(start.state, started_at=str(int(time.time()) - 3600))
    assert provider.complete(params, stale) is None
    # The refusals did not spend the code: the genuine callback still logs in.
    assert provider.complete(params, start.state) is not None


def test_a_token_for_another_login_is_refused_by_its_nonce(oidc_issuer: str) -> None:
    provider = _provider(oidc_issuer)
    start = provider.begin(REDIRECT_URI)
    params = browser_login(start, "u-ada")
    other_login = provider.begin(REDIRECT_URI)
    assert provider.complete(params, dict(start.state, nonce=other_login.state["nonce"])) is None


def test_denied_consent_is_a_refusal(oidc_issuer: str) -> None:
    provider = _provider(oidc_issuer)
    start = provider.begin(REDIRECT_URI)
    params = browser_login(start, "u-ada", action="deny")
    assert params["error"] == "access_denied"
    assert provider.complete(params, start.state) is None


def test_expired_id_tokens_are_refused(oidc_expired_issuer: str) -> None:
    provider = _provider(oidc_expired_issuer)
    start = provider.begin(REDIRECT_URI)
    assert provider.complete(browser_login(start, "u-ada"), start.state) is None


def _forging_provider(issuer: str, forge: Any) -> OidcAuthProvider:
    class Forger(OidcAuthProvider):
        def _redeem(self, code: str, state: Mapping[str, str]) -> dict[str, Any] | None:
            tokens = super()._redeem(code, state)
            assert tokens is not None
            claims = jwt.decode(tokens["id_token"], options={"verify_signature": False})
            return tokens | {"id_token": forge(claims | {"groups": ["admins"]})}

    return _provider(issuer, Forger)


@pytest.mark.parametrize("forge", [
    pytest.param(lambda c: jwt.encode(c, rsa.generate_private_key(public_exponent=65537, key_size=2048),
                                      algorithm="RS256"), id="signed-with-another-key"),
    pytest.param(lambda c: jwt.encode(c, "client-secret", algorithm="HS256"), id="hmac-with-the-client-secret"),
    pytest.param(lambda c: jwt.encode(c, None, algorithm="none"), id="unsigned"),
    pytest.param(lambda c: "not.a.jwt", id="garbage"),
])
def test_forged_id_tokens_are_refused(oidc_issuer: str, forge: Any) -> None:
    provider = _forging_provider(oidc_issuer, forge)
    start = provider.begin(REDIRECT_URI)
    assert provider.complete(browser_login(start, "u-ada"), start.state) is None


def test_test_connection_and_the_discovery_url_form(oidc_issuer: str) -> None:
    summary = _provider(oidc_issuer + DISCOVERY_PATH).test_connection()
    assert summary == f"{oidc_issuer}: 1 signing key(s), ID tokens signed with RS256; userinfo endpoint"


def test_provider_failures_raise_clear_errors(oidc_issuer: str) -> None:
    with pytest.raises(OidcError, match=r"discovery document at .*/realms/ml/\.well-known.* answered HTTP 404"):
        _provider(oidc_issuer + "/realms/ml").test_connection()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(OidcError, match=rf"cannot reach .* at http://127.0.0.1:{port}/.*check oidc_issuer"):
        _provider(f"http://127.0.0.1:{port}").begin(REDIRECT_URI)
    with pytest.raises(OidcError, match="not an absolute http"):
        _provider(oidc_issuer).begin("/relative/callback")


def test_bad_options_are_listed_together(tmp_path: Any) -> None:
    bad = OidcOptions(oidc_issuer="http://idp.example.org", oidc_client_id=" ", oidc_scopes="email profile",
                      oidc_groups_claim="", oidc_ca_file=str(tmp_path / "missing.pem"), oidc_timeout=0)
    with pytest.raises(ConfigError) as caught:
        OidcAuthProvider(bad)
    text = str(caught.value)
    assert "$.oidc_issuer:" in text and "needs https" in text
    for key in ("oidc_client_id", "oidc_scopes", "oidc_groups_claim", "oidc_ca_file", "oidc_timeout"):
        assert f"$.{key}:" in text, key
    with pytest.raises(ConfigError, match="oidc_issuer: required"):
        OidcAuthProvider(OidcOptions(oidc_client_id="x"))
