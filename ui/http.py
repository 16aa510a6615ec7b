"""Reading and validating HTTP input: JSON bodies and the text fields every resource shares."""

from __future__ import annotations

import json
import math
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
#: Deepest nesting of arrays and objects in a JSON body: no endpoint needs more than a few levels, and deeper
#: nesting only serves to exhaust the stack of the parser or of code that walks the value afterwards.
MAX_JSON_DEPTH = 32
#: Largest integer magnitude in a JSON body: the databases store 64-bit integers and nothing needs more.
MAX_JSON_INT = 2**63 - 1
_SURROGATE = re.compile("[\ud800-\udfff]")


def bad_request(message: str) -> falcon.HTTPBadRequest:
    """400 with ``{"title": "Bad request", "description": message}``."""
    return falcon.HTTPBadRequest(title="Bad request", description=message)


def read_json(req: falcon.Request, max_bytes: int) -> dict[str, Any]:
    """The request body as a JSON object: 415 for another content type, 413 when too large, 400 when malformed.

    Malformed includes what Python's parser would accept but nothing downstream can store or walk safely: NaN and
    infinities, integers beyond 64 bits, unpaired surrogate escapes and nesting deeper than :data:`MAX_JSON_DEPTH`.
    """
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
    data = parse_json(raw)
    if not isinstance(data, dict):
        raise bad_request("the body must be a JSON object")
    return data


def parse_json(raw: bytes) -> Any:
    """Decode a JSON document from a client; 400 (never another error) when it is not one this server accepts."""
    try:
        data = json.loads(raw.decode("utf-8"), parse_constant=_refuse_constant, parse_float=_finite_float,
                          parse_int=_bounded_int)
    except RecursionError:
        raise bad_request(f"the body is nested deeper than {MAX_JSON_DEPTH} levels") from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise bad_request(f"the body is not valid JSON: {exc}") from None
    _check_shape(data)
    return data


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text[:40]} is out of range")
    return value


def _bounded_int(text: str) -> int:
    # JSON integers have no leading zeros, so the length alone rules out the giants int() would refuse or choke on
    value = int(text) if len(text) <= 20 else None
    if value is None or abs(value) > MAX_JSON_INT:
        raise ValueError(f"{text[:40]}{'...' if len(text) > 40 else ''} is larger than a 64-bit integer")
    return value


def _check_shape(data: Any) -> None:
    """Refuse deep nesting and unpaired surrogates (text no file or database can hold), without recursion."""
    pending = [(data, 1)]
    while pending:
        value, depth = pending.pop()
        if isinstance(value, str):
            if _SURROGATE.search(value):
                raise bad_request("the body holds an unpaired surrogate escape (\\ud800-\\udfff), which is not text")
        elif isinstance(value, dict | list):
            if depth > MAX_JSON_DEPTH:
                raise bad_request(f"the body is nested deeper than {MAX_JSON_DEPTH} levels")
            items = [*value.keys(), *value.values()] if isinstance(value, dict) else value
            pending.extend((item, depth + 1) for item in items)


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
    """A non-negative integer query parameter or header, capped at ``maximum``; 400 for anything but ASCII digits
    (``str.isdigit`` also accepts superscripts and other scripts' digits, which ``int`` refuses or reads)."""
    if value is None:
        return default
    value = value.strip()
    if not value or not value.isascii() or not value.isdigit():
        raise bad_request(f"{name} must be a non-negative integer (digits 0-9)")
    digits = value.lstrip("0")
    return maximum if len(digits) > len(str(maximum)) else min(int(digits or "0"), maximum)


USERNAME_RULE = "2-64 letters, digits, '.', '_' or '-', starting with a letter or digit"
EMAIL_RULE = "an address such as name@example.org"
NAME_RULE = "1-64 lowercase letters, digits, '.', '_' or '-'"
LABEL_RULE = "1-100 letters, digits, spaces and . , : ( ) & @ / + -"
TEXT_RULE = "up to 200 letters, digits, spaces and . , : ! ? ( ) & @ / + ' -"
