"""The one cattrs converter used for configs: strict about types, lenient about SimpleTuner's string spellings.

SimpleTuner's ``config.json`` files are written from command-line arguments, so numbers and booleans often arrive
as strings (``"--learning_rate": "1e-4"``, ``"--push_to_hub": "true"``). Those load; values that would change
meaning silently (``8.5`` for an int, ``"maybe"`` for a bool, a list for a string) are errors.
"""

from __future__ import annotations

from typing import Any

import cattrs

_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


class ValueTypeError(ValueError):
    """A value that cannot be read as the expected type; the message is the user-facing ``expected …`` text."""


def _describe(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _structure_int(value: Any, _: type) -> int:
    if isinstance(value, bool):
        raise ValueTypeError(f"expected int, got {_describe(value)}")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            pass
        try:
            as_float = float(value)
        except ValueError:
            as_float = None
        if as_float is not None and as_float.is_integer():
            return int(as_float)
    raise ValueTypeError(f"expected int, got {_describe(value)}")


def _structure_float(value: Any, _: type) -> float:
    if isinstance(value, bool):
        raise ValueTypeError(f"expected float, got {_describe(value)}")
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            pass
    raise ValueTypeError(f"expected float, got {_describe(value)}")


def _structure_bool(value: Any, _: type) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
    raise ValueTypeError(f"expected bool (true or false), got {_describe(value)}")


def _structure_str(value: Any, _: type) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    raise ValueTypeError(f"expected str, got {_describe(value)}")


def _structure_str_list(value: Any, _: type) -> list[str]:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    raise ValueTypeError(f"expected a list of strings or a comma-separated string, got {_describe(value)}")


def _structure_mapping(value: Any, _: type) -> dict[str, Any]:
    if isinstance(value, dict):
        return dict(value)
    raise ValueTypeError(f"expected an object, got {_describe(value)}")


def make_converter() -> cattrs.Converter:
    """Build the strict converter (one per schema; cheap)."""
    converter = cattrs.Converter()
    converter.register_structure_hook(int, _structure_int)
    converter.register_structure_hook(float, _structure_float)
    converter.register_structure_hook(bool, _structure_bool)
    converter.register_structure_hook(str, _structure_str)
    converter.register_structure_hook_func(lambda tp: tp == list[str], _structure_str_list)
    converter.register_structure_hook_func(lambda tp: tp == dict[str, Any], _structure_mapping)
    return converter


def structure_value(converter: cattrs.Converter, value: Any, tp: Any) -> Any:
    """Convert one raw value to ``tp``; raises :class:`ValueTypeError` with a user-facing message."""
    try:
        return converter.structure(value, tp)
    except ValueTypeError:
        raise
    except Exception as exc:  # cattrs wraps hook errors for unions (Optional) in its own exceptions
        inner = _first_value_error(exc)
        if inner is not None:
            raise inner from None
        raise ValueTypeError(f"expected {tp}, got {_describe(value)}") from None


def _first_value_error(exc: BaseException) -> ValueTypeError | None:
    if isinstance(exc, ValueTypeError):
        return exc
    for child in getattr(exc, "exceptions", ()) or ():
        found = _first_value_error(child)
        if found:
            return found
    return _first_value_error(exc.__cause__) if exc.__cause__ else None
