"""Checks of the speed and memory options against the machine a run starts on (a GPU and its generation, installed
kernels, torch's compiler backends), made before any data or model is loaded so that an option this machine cannot
honour fails in the first second with its reason, not after the caches are built."""

from __future__ import annotations

from typing import Any

from simpletuner.core.training.attention import backend_name, backend_problem, training_backend, uses_sage
from simpletuner.core.training.compile import backend_problem as compile_problem
from simpletuner.core.training.compile import machine_problem as compile_machine_problem
from simpletuner.core.training.fp8 import fp8_problem
from simpletuner.core.training.resolve import TrainingSetupError


def machine_problems(core: Any, device: Any) -> list[str]:
    """Why this machine cannot run the options ``core`` asks for (empty when it can)."""
    cuda = getattr(device, "type", str(device)) == "cuda"
    problems: list[str] = []
    if core.fp8_training:
        problems.append(fp8_problem(device) or "")
    backend = training_backend(core) or (backend_name(core.attention_mechanism) if uses_sage(core) else None)
    if backend is not None:
        problems.append(backend_problem(backend, cuda=cuda, mechanism=core.attention_mechanism) or "")
    problems.append(compile_problem(core) or compile_machine_problem(core, cuda=cuda) or "")
    return [p for p in problems if p]


def check_machine(core: Any, device: Any) -> None:
    """Raise :class:`TrainingSetupError` naming every option this machine cannot run."""
    problems = machine_problems(core, device)
    if problems:
        raise TrainingSetupError("; ".join(problems))
