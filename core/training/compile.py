"""``torch.compile`` of the trained model (``dynamo_backend`` and its ``dynamo_*`` options).

Compilation happens in place (``nn.Module.compile``) after quantisation, the adapter and gradient checkpointing are
in place, so the module tree, its parameter names and therefore checkpoints, resumes and the saved LoRA are the same
as an eager run's (no ``_orig_mod.`` prefixes). With ``dynamo_use_regional_compilation`` only the family's repeated
block classes (the ones FSDP2 wraps) are compiled, each class once: all blocks of a class share its compiled graphs
(one more where a block's inputs need no gradient, as the first block's in a LoRA run), so the compile time is that
of a block or two, however deep the model.

Validation renders at another resolution and without gradients; compiling for that would cost more than the few
sampler steps gain, so :func:`eager` runs it with the compiled code set aside (``torch.compiler.set_stance``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from simpletuner.core.config.performance import CUDA_GRAPH_MODES
from simpletuner.core.training.resolve import TrainingSetupError

#: dynamo_backend values that mean "do not compile" (SimpleTuner and accelerate spell it "no").
NO_COMPILE = ("no", "none", "")


def compiling(core: Any) -> bool:
    """Whether the run compiles its trained model."""
    return str(core.dynamo_backend).strip().lower() not in NO_COMPILE


def backend_problem(core: Any) -> str | None:
    """Why ``dynamo_backend`` cannot be used here (None when it can), checked against the backends this torch
    build registers, debug backends (eager, aot_eager) included."""
    if not compiling(core):
        return None
    import torch

    backend = core.dynamo_backend.strip().lower()
    known = torch._dynamo.list_backends(exclude_tags=())
    if backend not in known:
        usual = [b for b in torch._dynamo.list_backends() if b in known]
        return (f"dynamo_backend {core.dynamo_backend!r} is not a torch.compile backend of this torch build; use "
                f"one of {', '.join(usual)} (or eager, aot_eager to debug), or no to train eagerly")
    return None


def machine_problem(core: Any, *, cuda: bool) -> str | None:
    """Why this machine cannot compile as ``core`` asks (None when it can): CUDA graphs without a CUDA GPU, or
    inductor on the CPU without a C++ compiler (found as inductor itself finds one)."""
    if not compiling(core):
        return None
    if not cuda and core.dynamo_mode in CUDA_GRAPH_MODES:
        return (f"dynamo_mode {core.dynamo_mode!r} records CUDA graphs and this machine has no CUDA GPU; use "
                "dynamo_mode: default or max-autotune-no-cudagraphs")
    if not cuda and core.dynamo_backend.strip().lower() == "inductor":
        from torch._inductor import cpp_builder, exc

        try:
            cpp_builder.get_cpp_compiler()
        except (exc.InvalidCxxCompiler, OSError):
            return ("dynamo_backend 'inductor' compiles C++ code on the CPU and finds no C++ compiler here "
                    "(g++ or clang++, or the CXX environment variable); install one, or set dynamo_backend: no")
    return None


def compile_options(core: Any) -> dict[str, Any]:
    """The keyword arguments of ``torch.compile`` for this run."""
    options: dict[str, Any] = {"backend": core.dynamo_backend.strip().lower(), "fullgraph": core.dynamo_fullgraph,
                               "dynamic": core.dynamo_dynamic}
    if core.dynamo_mode not in (None, "default"):
        options["mode"] = core.dynamo_mode
    return options


def compile_model(model: Any, family: Any, core: Any) -> list[str]:
    """Compile ``model`` in place as ``core`` asks; returns the qualified names of the compiled modules (empty when
    nothing is compiled). Regional compilation needs the family's ``block_classes``; a family without them, or
    whose classes match nothing, is an error naming the fix."""
    if not compiling(core):
        return []
    problem = backend_problem(core)
    if problem is not None:
        raise TrainingSetupError(problem)
    options = compile_options(core)
    if not core.dynamo_use_regional_compilation:
        model.compile(**options)
        return [""]
    classes = set(getattr(family, "block_classes", ()))
    blocks = [(name, module) for name, module in model.named_modules() if type(module).__name__ in classes]
    if not blocks:
        raise TrainingSetupError(f"dynamo_use_regional_compilation: the family declares no repeated block classes "
                                 f"found in {type(model).__name__} (block_classes: {sorted(classes) or 'none'}); "
                                 "set dynamo_use_regional_compilation: false to compile the whole model")
    for _, block in blocks:
        block.compile(**options)
    return [name for name, _ in blocks]


@contextlib.contextmanager
def eager() -> Iterator[None]:
    """Run compiled modules eagerly inside the block (validation: another shape, no gradients, few calls)."""
    import torch

    with torch.compiler.set_stance("force_eager"):
        yield
