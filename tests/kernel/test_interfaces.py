"""The runnable examples in the interfaces' docstrings run, and every kind has an interface."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import simpletuner.core.interfaces as interfaces

MODULES = [m.name for m in pkgutil.iter_modules(interfaces.__path__, "simpletuner.core.interfaces.")]


@pytest.mark.parametrize("name", MODULES + ["simpletuner.plugins.data_backends.local", "simpletuner.core.hookspecs",
                                            "simpletuner.core.specs", "simpletuner.plugins.auth.local",
                                            "simpletuner.plugins.executors.ray_driver"])
def test_docstring_examples_run(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
    assert result.attempted > 0, f"{name} has no runnable example"


def test_every_public_interface_is_documented() -> None:
    for name in interfaces.__all__:
        obj = getattr(interfaces, name)
        assert obj.__doc__ and len(obj.__doc__.strip()) > 20, name
        for attr, member in vars(obj).items():
            if callable(member) and not attr.startswith("_"):
                assert member.__doc__, f"{name}.{attr} has no docstring"
