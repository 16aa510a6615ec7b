"""Passwords (bcrypt), the password policy, random tokens and their fast hashes."""

from __future__ import annotations

import functools
import hashlib
import hmac
import secrets

import bcrypt

API_KEY_PREFIX = "st_"
#: ``secrets.token_urlsafe(32)`` gives 43 characters of 6 random bits each.
API_KEY_RANDOM_BYTES = 32
MIN_PASSWORD_LENGTH = 10
MAX_PASSWORD_BYTES = 72  # bcrypt ignores anything beyond 72 bytes; refuse rather than truncate silently

PASSWORD_POLICY = (
    f"at least {MIN_PASSWORD_LENGTH} characters (at most {MAX_PASSWORD_BYTES} bytes), "
    "not the same as the username or email, and not one character repeated"
)


def password_problem(password: object, username: str = "", email: str | None = None) -> str | None:
    """Why ``password`` breaks the policy, or None when it meets it."""
    if not isinstance(password, str):
        return "password must be a string"
    if len(password) < MIN_PASSWORD_LENGTH:
        return f"password must have at least {MIN_PASSWORD_LENGTH} characters"
    if len(password.encode("utf-8")) > MAX_PASSWORD_BYTES:
        return f"password must be at most {MAX_PASSWORD_BYTES} bytes long"
    lowered = password.lower()
    if lowered in {username.lower(), (email or "").lower()}:
        return "password must not be the username or email"
    if len(set(password)) == 1:
        return "password must not be one character repeated"
    return None


def hash_password(password: str, rounds: int = 12) -> str:
    """A bcrypt hash of ``password``."""
    return bcrypt.hashpw(password.encode("utf-8"), bcrypt.gensalt(rounds)).decode("ascii")


def verify_password(password: str, hashed: str | None, rounds: int = 12) -> bool:
    """True when ``password`` matches ``hashed``. With no hash, spends the same time on a dummy hash and fails,
    so unknown users and wrong passwords cannot be told apart by timing."""
    encoded = password.encode("utf-8")[:MAX_PASSWORD_BYTES]
    if not hashed:
        bcrypt.checkpw(encoded, _dummy_hash(rounds))
        return False
    try:
        return bcrypt.checkpw(encoded, hashed.encode("ascii"))
    except ValueError:  # a corrupt stored hash: refuse, never crash the login
        return False


@functools.lru_cache(maxsize=4)
def _dummy_hash(rounds: int) -> bytes:
    return bcrypt.hashpw(b"not a real password", bcrypt.gensalt(rounds))


def new_token(nbytes: int = 32) -> str:
    """A random URL-safe token."""
    return secrets.token_urlsafe(nbytes)


def token_hash(token: str) -> str:
    """SHA-256 hex of a high-entropy token (session, API key, setup token): fast, and enough for random secrets."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_api_key() -> str:
    """A new API key: ``st_`` followed by 43 random URL-safe characters."""
    return API_KEY_PREFIX + secrets.token_urlsafe(API_KEY_RANDOM_BYTES)


def looks_like_api_key(value: str) -> bool:
    """A cheap shape check before any database lookup."""
    return value.startswith(API_KEY_PREFIX) and 32 + len(API_KEY_PREFIX) <= len(value) <= 128


def same(a: str | None, b: str | None) -> bool:
    """Constant-time string comparison (False when either is missing)."""
    if not a or not b:
        return False
    return hmac.compare_digest(a.encode("utf-8"), b.encode("utf-8"))
