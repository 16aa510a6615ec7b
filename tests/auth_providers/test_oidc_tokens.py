"""ID-token verification with key sets built here: key choice with and without ``kid``, and each claim check."""

from __future__ import annotations

import json
import time
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from simpletuner.plugins.auth.oidc_tokens import TokenRefused, UnknownKey, claim_path, group_names, verify_id_token

ISSUER, CLIENT, NONCE = "https://idp.example.org", "simpletuner", "n-123"


def _jwk(private_key: Any, **extra: str) -> dict[str, Any]:
    is_rsa = isinstance(private_key, rsa.RSAPrivateKey)
    algorithm = jwt.algorithms.RSAAlgorithm if is_rsa else jwt.algorithms.ECAlgorithm
    return json.loads(algorithm.to_jwk(private_key.public_key())) | extra


@pytest.fixture(scope="module")
def keys() -> dict[str, Any]:
    return {"a": rsa.generate_private_key(public_exponent=65537, key_size=2048),
            "b": rsa.generate_private_key(public_exponent=65537, key_size=2048),
            "ec": ec.generate_private_key(ec.SECP256R1())}


def _claims(**changes: Any) -> dict[str, Any]:
    now = int(time.time())
    return {"iss": ISSUER, "sub": "u-1", "aud": CLIENT, "iat": now, "exp": now + 300, "nonce": NONCE} | changes


def _verify(token: str, jwks: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    return verify_id_token(token, jwks=jwks, issuer=ISSUER, client_id=CLIENT, nonce=NONCE, **kwargs)


def test_key_is_chosen_by_kid_or_tried_in_turn_without_one(keys: dict[str, Any]) -> None:
    jwks = {"keys": [_jwk(keys["a"], kid="a"), _jwk(keys["ec"], kid="ec"), _jwk(keys["b"], kid="b")]}
    assert _verify(jwt.encode(_claims(), keys["b"], algorithm="RS256", headers={"kid": "b"}), jwks)["sub"] == "u-1"
    assert _verify(jwt.encode(_claims(), keys["b"], algorithm="RS256"), jwks)["sub"] == "u-1"
    assert _verify(jwt.encode(_claims(), keys["ec"], algorithm="ES256"), jwks)["sub"] == "u-1"
    # A kid naming a key that did not sign the token, and a kid missing from the set.
    with pytest.raises(UnknownKey):
        _verify(jwt.encode(_claims(), keys["b"], algorithm="RS256", headers={"kid": "a"}), jwks)
    with pytest.raises(UnknownKey):
        _verify(jwt.encode(_claims(), keys["b"], algorithm="RS256", headers={"kid": "rotated"}), jwks)
    # Encryption keys never verify signatures.
    with pytest.raises(UnknownKey):
        _verify(jwt.encode(_claims(), keys["a"], algorithm="RS256"), {"keys": [_jwk(keys["a"], use="enc")]})


@pytest.mark.parametrize("changes, reason", [
    ({"iss": "https://evil.example.org"}, "issuer"),
    ({"aud": "someone-else"}, "audience"),
    ({"exp": int(time.time()) - 120}, "expired"),
    ({"iat": None}, "iat"),
    ({"nonce": "n-other"}, "nonce"),
    ({"nonce": None}, "nonce"),
    ({"aud": [CLIENT, "other"]}, "azp"),
])
def test_claim_checks(keys: dict[str, Any], changes: dict[str, Any], reason: str) -> None:
    claims = {k: v for k, v in _claims(**changes).items() if v is not None}
    token = jwt.encode(claims, keys["a"], algorithm="RS256")
    with pytest.raises(TokenRefused, match=f"(?i){reason}") as caught:
        _verify(token, {"keys": [_jwk(keys["a"])]})
    assert not isinstance(caught.value, UnknownKey)


def test_several_audiences_pass_when_azp_names_this_client(keys: dict[str, Any]) -> None:
    token = jwt.encode(_claims(aud=[CLIENT, "other"], azp=CLIENT), keys["a"], algorithm="RS256")
    assert _verify(token, {"keys": [_jwk(keys["a"])]})["azp"] == CLIENT


def test_algorithms_the_provider_does_not_advertise_are_refused(keys: dict[str, Any]) -> None:
    token = jwt.encode(_claims(), keys["ec"], algorithm="ES256")
    with pytest.raises(TokenRefused, match="'ES256'"):
        _verify(token, {"keys": [_jwk(keys["ec"])]}, allowed_algorithms=["RS256"])


def test_claim_paths_and_group_names() -> None:
    claims = {"realm_access": {"roles": ["b", "a", "b"]}, "odd.name": "x", "groups": "solo", "n": 3}
    assert claim_path(claims, "realm_access.roles") == ["b", "a", "b"]
    assert claim_path(claims, "odd.name") == "x"
    assert claim_path(claims, "realm_access.missing") is None
    assert group_names(claim_path(claims, "realm_access.roles")) == ("a", "b")
    assert group_names(claims["groups"]) == ("solo",)
    assert group_names(claims["n"]) == () and group_names(None) == ()
