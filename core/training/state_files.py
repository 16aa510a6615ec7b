"""Checkpoint state files (optimizer, scheduler, random states, EMA) that load without running code.

One state is one safetensors file: its tensors are the state's tensors, and its header metadata holds the rest of
the state as JSON, where tuples, dicts (whose keys may be integers) and references to tensors are tagged objects
(``{"tuple": [...]}``, ``{"dict": [[key, value], ...]}``, ``{"tensor": "<name>"}``). Reading builds nothing but
containers, numbers, strings and tensors, so a planted or damaged file can only be refused, never run: unlike a
pickle (``torch.save``), which names functions that loading calls. Types survive the round trip exactly (a tuple
stays a tuple, ``1.0`` stays a float), which is what lets a resumed run continue bit for bit.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from simpletuner.core.errors import SimpleTunerError

#: Header metadata key holding the JSON structure; a safetensors file without it is not a state file.
_STRUCTURE_KEY = "simpletuner.state"
_SCALARS = (type(None), bool, int, float, str)
#: What loading code raises for a state of the wrong shape (``load_state_dict``, ``set_state``, …).
_REJECTIONS = (TypeError, ValueError, KeyError, IndexError, AttributeError, OverflowError, RuntimeError)


class DamagedStateError(SimpleTunerError):
    """A checkpoint file that is damaged or was not written by SimpleTuner."""

    def __init__(self, path: Path, reason: str) -> None:
        self.path = path
        super().__init__(f"checkpoint file {path} is damaged or was not written by SimpleTuner ({reason}); resume "
                         f"from another checkpoint or start fresh")


def write_state(path: Path, state: Any) -> None:
    """Write ``state``: nested dicts, lists and tuples of tensors, None, bools, ints, floats and strings."""
    from safetensors.torch import save_file

    tensors: dict[str, Any] = {}
    structure = _encode(state, tensors)
    save_file(tensors, str(path), metadata={_STRUCTURE_KEY: json.dumps(structure)})


def read_state(path: Path) -> Any:
    """The state :func:`write_state` wrote to ``path`` (tensors on the CPU); raises :class:`DamagedStateError` for
    a missing, truncated or foreign file."""
    from safetensors import SafetensorError, safe_open

    if not path.is_file():
        raise DamagedStateError(path, "the file is missing")
    try:
        with safe_open(str(path), framework="pt") as file:
            metadata = file.metadata() or {}
            tensors = {name: file.get_tensor(name) for name in file.keys()}
    except (SafetensorError, OSError, *_REJECTIONS) as exc:
        raise DamagedStateError(path, f"not a readable safetensors file: {_first_line(exc)}") from None
    if _STRUCTURE_KEY not in metadata:
        raise DamagedStateError(path, "it holds no SimpleTuner state")
    try:
        return _decode(json.loads(metadata[_STRUCTURE_KEY]), tensors)
    except (ValueError, TypeError, RecursionError) as exc:
        raise DamagedStateError(path, _first_line(exc)) from None


def load_into(path: Path, apply: Callable[[Any], None]) -> None:
    """Read the state at ``path`` and hand it to ``apply`` (a ``load_state_dict``, say); a state that ``apply``
    rejects is reported as a damaged file as well."""
    state = read_state(path)
    try:
        apply(state)
    except _REJECTIONS as exc:
        raise DamagedStateError(path, _first_line(exc)) from None


def check_like(value: Any, template: Any, where: str = "state") -> None:
    """Raise ValueError unless ``value`` is shaped like ``template`` (typically the live object's own
    ``state_dict()``): dicts with no keys beyond the template's, lists and tuples of the same length, tensors of the
    same shape, scalars of the same kind (ints and floats are both numbers).

    ``load_state_dict`` methods such as a scheduler's copy every entry onto the object, so an unchecked entry could
    replace any attribute; keys the template has and the value lacks keep their current values."""
    kind = _kind(value)
    if kind != _kind(template):
        raise ValueError(f"{where} is a {kind}, expected a {_kind(template)}")
    if kind == "dict":
        for key, item in value.items():
            if key not in template:
                raise ValueError(f"{where} has an unexpected entry {key!r}")
            check_like(item, template[key], f"{where}[{key!r}]")
    elif kind in ("list", "tuple"):
        if len(value) != len(template):
            raise ValueError(f"{where} has {len(value)} entries, expected {len(template)}")
        for index, (item, expected) in enumerate(zip(value, template, strict=True)):
            check_like(item, expected, f"{where}[{index}]")
    elif kind == "tensor" and tuple(value.shape) != tuple(template.shape):
        raise ValueError(f"{where} has shape {tuple(value.shape)}, expected {tuple(template.shape)}")


def _kind(value: Any) -> str:
    import torch

    if isinstance(value, torch.Tensor):
        return "tensor"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    return {dict: "dict", list: "list", tuple: "tuple", str: "string", type(None): "None"}.get(type(value), "other")


def _encode(value: Any, tensors: dict[str, Any]) -> Any:
    import torch

    if isinstance(value, torch.Tensor):
        name = str(len(tensors))
        tensors[name] = value.detach().to("cpu").contiguous()
        return {"tensor": name}
    if isinstance(value, dict):
        return {"dict": [[_encode(k, tensors), _encode(v, tensors)] for k, v in value.items()]}
    if isinstance(value, tuple):
        return {"tuple": [_encode(v, tensors) for v in value]}
    if isinstance(value, list):
        return [_encode(v, tensors) for v in value]
    if type(value) in _SCALARS:
        return value
    raise TypeError(f"a checkpoint state file cannot hold a {type(value).__name__}")


def _decode(node: Any, tensors: dict[str, Any]) -> Any:
    if isinstance(node, list):
        return [_decode(v, tensors) for v in node]
    if not isinstance(node, dict):
        return node  # a JSON scalar
    if len(node) != 1:
        raise ValueError(f"an object with {len(node)} entries where one tagged entry belongs")
    [(tag, body)] = node.items()
    if tag == "tensor" and isinstance(body, str) and body in tensors:
        return tensors[body]
    if tag == "tuple" and isinstance(body, list):
        return tuple(_decode(v, tensors) for v in body)
    if tag == "dict" and isinstance(body, list) and all(isinstance(p, list) and len(p) == 2 for p in body):
        return {_decode(k, tensors): _decode(v, tensors) for k, v in body}
    raise ValueError(f"an unexpected {tag!r} entry")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
