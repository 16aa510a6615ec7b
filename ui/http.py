"""Reading and validating HTTP input: JSON bodies and the text fields every resource shares."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

import falcon

USERNAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{1,63}$")
EMAIL_RE = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                      r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$")
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")  # machine names: levels, providers
LABEL_RE = re.compile(r"^[\w .,:()&@/+-]{1,100}$")  # short labels: key names, titles
# Free text (display names, descriptions): letters of any script, digits and plain punctuation. Markup, quotes,
# semicolons and '=' are refused: nothing here needs them, and refusing them keeps stored text inert everywhere.
TEXT_RE = re.compile(r"^[\w .,:!?()&@/+'-]{0,200}$")


def bad_request(message: str) -> falcon.HTTPBadRequest:
    """400 with ``{"title": "Bad request", "description": message}``."""
    return falcon.HTTPBadRequest(title="Bad request", description=message)


def read_json(req: falcon.Request, max_bytes: int) -> dict[str, Any]:
    """The request body as a JSON object: 415 for another content type, 413 when too large, 400 when malformed."""
    content_type = (req.content_type or "").split(";")[0].strip().lower()
    if content_type != "application/json":
        raise falcon.HTTPUnsupportedMediaType(description="send the body as application/json")
    length = req.content_length
    if length is not None and length > max_bytes:
        raise falcon.HTTPContentTooLarge(description=f"the body may be at most {max_bytes} bytes")
    raw = req.bounded_stream.read(max_bytes + 1)
    if len(raw) > max_bytes:
        raise falcon.HTTPContentTooLarge(description=f"the body may be at most {max_bytes} bytes")
    if not raw:
        return {}
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise bad_request(f"the body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise bad_request("the body must be a JSON object")
    return data


def only_keys(data: Mapping[str, Any], allowed: set[str]) -> None:
    """400 naming any key the endpoint does not accept."""
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise bad_request(f"unknown field(s) {', '.join(unknown)}; accepted: {', '.join(sorted(allowed))}")


def field(data: Mapping[str, Any], key: str, pattern: re.Pattern[str] | None = None, *, required: bool = True,
          what: str = "") -> str | None:
    """A string field checked against ``pattern``; 400 naming the field when it is missing or malformed."""
    value = data.get(key)
    if value is None or value == "":
        if required:
            raise bad_request(f"{key} is required")
        return None
    if not isinstance(value, str):
        raise bad_request(f"{key} must be a string")
    if pattern is not None and not pattern.match(value):
        raise bad_request(f"{key} is not valid{': ' + what if what else ''}")
    return value


def boolean(data: Mapping[str, Any], key: str, default: bool = False) -> bool:
    """A JSON boolean field."""
    value = data.get(key, default)
    if not isinstance(value, bool):
        raise bad_request(f"{key} must be true or false")
    return value


def int_param(value: str | None, name: str, default: int, maximum: int) -> int:
    """A non-negative integer query parameter, capped at ``maximum``."""
    if value is None:
        return default
    if not value.isdigit():
        raise bad_request(f"{name} must be a non-negative integer")
    return min(int(value), maximum)


USERNAME_RULE = "2-64 letters, digits, '.', '_' or '-', starting with a letter or digit"
EMAIL_RULE = "an address such as name@example.org"
NAME_RULE = "1-64 lowercase letters, digits, '.', '_' or '-'"
LABEL_RULE = "1-100 letters, digits, spaces and . , : ( ) & @ / + -"
TEXT_RULE = "up to 200 letters, digits, spaces and . , : ! ? ( ) & @ / + ' -"
