"""The Quantizer interface."""

from __future__ import annotations

import fnmatch
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any


def excluded(name: str, patterns: Sequence[str]) -> bool:
    """Whether the qualified module name ``name`` or one of its parents matches a shell-style pattern of
    ``patterns``, as a quantizer's ``exclude`` is meant (``norm`` keeps ``norm`` and everything in it).

        >>> excluded("blocks.0.norm.linear", ["norm"]), excluded("blocks.0.norm.linear", ["*norm*"])
        (False, True)
        >>> excluded("proj_out", ["proj_out"]), excluded("proj_out.lora_A", ["proj_out"])
        (True, True)
    """
    parts = name.split(".")
    prefixes = [".".join(parts[:i]) for i in range(1, len(parts) + 1)]
    return any(fnmatch.fnmatchcase(prefix, pattern) for prefix in prefixes for pattern in patterns)


class Quantizer(ABC):
    """Stores a frozen module's weights in fewer bits.

    The precision levels a quantizer provides are declared on its spec
    (:class:`~simpletuner.core.specs.QuantizerSpec` ``precisions``), so configs are checked without importing it.

    Example (a toy quantizer that only records what it would do)::

        >>> class RecordingQuantizer(Quantizer):
        ...     def quantize(self, module, precision, exclude=()):
        ...         module["quantized"] = precision
        ...         module["kept"] = tuple(exclude)
        ...         return module
        >>> RecordingQuantizer().quantize({}, "int8-quanto", exclude=["norm"])
        {'quantized': 'int8-quanto', 'kept': ('norm',)}
    """

    @abstractmethod
    def quantize(self, module: Any, precision: str, exclude: Sequence[str] = ()) -> Any:
        """Quantise ``module`` in place to ``precision`` and freeze it, leaving submodules whose qualified names
        match a pattern of ``exclude`` untouched; return the module."""
