"""Verifying OpenID Connect ID tokens against the provider's JSON Web Key Set (PyJWT does the cryptography).

Only asymmetric signatures are accepted: ``none`` and the HMAC family (which would let anyone holding the client
secret mint tokens) are refused whatever the token's header claims.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import jwt

_log = logging.getLogger(__name__)

#: Signature algorithms an ID token may use.
ASYMMETRIC_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)
#: Seconds of clock difference tolerated between this server and the provider.
CLOCK_SKEW = 60
_REQUIRED_CLAIMS = ["iss", "sub", "aud", "exp", "iat"]


class TokenRefused(Exception):
    """The ID token is not acceptable; the message says why (for logs, not for the browser)."""


class UnknownKey(TokenRefused):
    """No key of the current key set verifies the token; a fresh key set may (the provider rotated its keys)."""


def _candidate_keys(jwks: Mapping[str, Any], header: Mapping[str, Any], alg: str) -> list[Any]:
    """Public keys of ``jwks`` that may have signed a token with this header.

    With a ``kid`` only that key qualifies; without one (some providers omit it) every signing key whose type
    fits the algorithm is tried.
    """
    kid = header.get("kid")
    keys = []
    for data in jwks.get("keys") or []:
        if not isinstance(data, dict) or data.get("use", "sig") != "sig":
            continue
        if kid is not None and data.get("kid") != kid:
            continue
        if data.get("alg") not in (None, alg):
            continue
        try:
            keys.append(jwt.PyJWK(data, algorithm=alg).key)
        except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError, TypeError):
            continue  # a key of another type, or one this library cannot use
    return keys


def verify_id_token(
    token: str,
    *,
    jwks: Mapping[str, Any],
    issuer: str,
    client_id: str,
    nonce: str,
    allowed_algorithms: Sequence[str] | None = None,
) -> dict[str, Any]:
    """The claims of a valid ID token: signature, ``iss``, ``aud`` (and ``azp``), ``exp``, ``iat`` and ``nonce``.

    Raises :class:`UnknownKey` when no key of ``jwks`` verifies the signature and :class:`TokenRefused` for
    anything else wrong with the token.
    """
    try:
        header = jwt.get_unverified_header(token)
    except jwt.InvalidTokenError as exc:
        raise TokenRefused(f"malformed ID token: {exc}") from exc
    alg = header.get("alg")
    allowed = ASYMMETRIC_ALGORITHMS & set(allowed_algorithms or ASYMMETRIC_ALGORITHMS)
    if alg not in allowed:
        raise TokenRefused(f"ID token signed with {alg!r}; accepted: {', '.join(sorted(allowed))}")
    keys = _candidate_keys(jwks, header, alg)
    claims: dict[str, Any] | None = None
    for key in keys:
        try:
            claims = jwt.decode(
                token, key=key, algorithms=[alg], audience=client_id, issuer=issuer, leeway=CLOCK_SKEW,
                options={"require": _REQUIRED_CLAIMS},
            )
            break
        except jwt.InvalidSignatureError:
            continue
        except jwt.InvalidTokenError as exc:  # signed by the provider, but expired, for someone else, ...
            raise TokenRefused(f"ID token refused: {exc}") from exc
    if claims is None:
        raise UnknownKey(f"no key of the provider's key set ({len(keys)} candidate(s)) verifies the ID token")
    audience = claims["aud"]
    # With several audiences the token must say it was issued to us (OpenID Connect Core §3.1.3.7).
    if isinstance(audience, list) and len(audience) > 1 and claims.get("azp") != client_id:
        raise TokenRefused(f"ID token has several audiences and azp {claims.get('azp')!r} is not this client")
    token_nonce = claims.get("nonce")
    if not isinstance(token_nonce, str) or not hmac.compare_digest(token_nonce.encode(), nonce.encode()):
        raise TokenRefused("ID token nonce does not match this login (a replayed or foreign token)")
    return claims


def claim_path(claims: Mapping[str, Any], path: str) -> Any:
    """The value at a dotted ``path`` (``realm_access.roles``); a claim whose own name holds dots wins."""
    if path in claims:
        return claims[path]
    value: Any = claims
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def group_names(value: Any) -> tuple[str, ...]:
    """Group names from a claim: a list of names, or one name; anything else gives none."""
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list | tuple):
        if value is not None:
            _log.warning("OIDC groups claim is a %s, not a list; ignoring it", type(value).__name__)
        return ()
    return tuple(sorted({item for item in value if isinstance(item, str) and item}))
