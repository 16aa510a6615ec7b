"""Known devices: a signed, HttpOnly cookie set at a successful login, bound to the account that logged in.

A browser presenting it for the account it tries is throttled on its own failures only (see
:mod:`simpletuner.ui.auth.throttle`), so an attacker failing against the account from elsewhere — even from the same
address, as every SSH-tunnel client shares loopback — never keeps its owner out. The cookie proves nothing else: it
is no credential and opens no session.

Each account gets a cookie of its own name (``st_device_`` and a digest of the account), so a browser used for two
accounts is known for both. The value is ``<payload>.<signature>``: the payload (account, device id, issue time) in
URL-safe base64 and an HMAC-SHA256 of it under a random server key kept in the ``settings`` table, which every worker
reads. The cookie is sent only to ``/api/auth``, where logins happen.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from collections.abc import Mapping

import falcon

from simpletuner.ui.db.models import Setting
from simpletuner.ui.settings import ServerSettings

COOKIE_PREFIX = "st_device_"
COOKIE_PATH = "/api/auth"
KEY_SETTING = "device_cookie_key"


def cookie_name(account: str) -> str:
    """The cookie that marks a known device of ``account`` (case-insensitive, as account names are)."""
    return COOKIE_PREFIX + hashlib.sha256(account.lower().encode("utf-8")).hexdigest()[:16]


def known_device(cookies: Mapping[str, str], account: str, now: float, settings: ServerSettings) -> str | None:
    """The device id of a valid, unexpired known-device cookie for ``account`` among ``cookies``, else None."""
    value = cookies.get(cookie_name(account))
    if not value or value.count(".") != 1:
        return None
    payload, signature = value.split(".")
    if not hmac.compare_digest(signature, _sign(payload)):
        return None
    try:
        data = json.loads(base64.urlsafe_b64decode(payload.encode("ascii")))
        bound, device, issued = data["a"], data["d"], float(data["t"])
    except (ValueError, KeyError, TypeError, UnicodeError):
        return None
    if bound != account.lower() or not isinstance(device, str) or now >= issued + settings.known_device_days * 86400:
        return None
    return device


def remember_device(resp: falcon.Response, account: str, device: str | None, now: float,
                    settings: ServerSettings) -> None:
    """Set (or renew, keeping ``device``) the known-device cookie of ``account`` after a successful login."""
    data = {"a": account.lower(), "d": device or secrets.token_urlsafe(16), "t": now}
    payload = base64.urlsafe_b64encode(json.dumps(data, separators=(",", ":")).encode("utf-8")).decode("ascii")
    resp.set_cookie(cookie_name(account), f"{payload}.{_sign(payload)}",
                    max_age=int(settings.known_device_days * 86400), path=COOKIE_PATH,
                    secure=settings.secure_cookies, http_only=True, same_site="Strict")


def _sign(payload: str) -> str:
    digest = hmac.new(_key(), payload.encode("ascii", "replace"), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=")


def _key() -> bytes:
    """The server's signing key, made on first use; the first worker to store one wins."""
    row = Setting.get_or_none(Setting.key == KEY_SETTING)
    if row is None:
        Setting.insert(key=KEY_SETTING, value={"key": secrets.token_hex(32)}).on_conflict_ignore().execute()
        row = Setting.get(Setting.key == KEY_SETTING)
    return bytes.fromhex(row.value["key"])
