"""Attention kernels of the trained model (``attention_mechanism``) through diffusers' attention dispatcher, and the
check that keeps PyTorch's cuDNN attention out of runs whose torch build cannot run its backward pass.

``attention_mechanism`` takes SimpleTuner's names (:data:`~simpletuner.core.config.core_options.ATTENTION_BACKENDS`
maps them to diffusers' backend names). A backend whose package is missing or that needs a GPU this machine lacks is
refused before training with the install hint. SageAttention has no backward pass, so it serves validation only
(``sageattention_usage: inference``) while training keeps PyTorch's SDPA.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from typing import Any

from simpletuner.core.config.core_options import ATTENTION_BACKENDS
from simpletuner.core.training.resolve import TrainingSetupError

log = logging.getLogger(__name__)

#: What to install for a backend diffusers reports as unusable, by the start of its diffusers name (every
#: SageAttention kernel comes from one package).
_INSTALL_HINTS = (
    ("_flash_3", "build FlashAttention 3 (hopper/ in the flash-attention repository) on a Hopper GPU"),
    ("_flash_varlen_3", "build FlashAttention 3 (hopper/ in the flash-attention repository) on a Hopper GPU"),
    ("flash", "pip install flash-attn"), ("xformers", "pip install xformers"),
    ("sage", "pip install sageattention"), ("_sage", "pip install sageattention"),
)
#: Backends that train on a CPU; the others need a CUDA GPU (PyTorch's fused kernels, every third-party kernel, and
#: flex attention, which has no backward pass on the CPU).
_CPU_BACKENDS = ("native", "_native_math")


def backend_name(mechanism: str) -> str:
    """diffusers' backend name of an ``attention_mechanism`` value."""
    return ATTENTION_BACKENDS[mechanism]


def uses_sage(core: Any) -> bool:
    """Whether the run renders its validation images with SageAttention."""
    return str(core.attention_mechanism).startswith("sageattention")


def training_backend(core: Any) -> str | None:
    """The backend the trained model trains with; None keeps diffusers' default (PyTorch SDPA, which picks its best
    kernel). SageAttention never trains (no backward pass; the config check refuses asking for it)."""
    if core.attention_mechanism == "diffusers" or uses_sage(core):
        return None
    return backend_name(core.attention_mechanism)


def install_hint(backend: str) -> str:
    """What to install for diffusers' attention backend ``backend``."""
    return next((hint for prefix, hint in _INSTALL_HINTS if backend.startswith(prefix)),
                "install the package it needs")


def backend_problem(backend: str, *, cuda: bool, mechanism: str | None = None) -> str | None:
    """Why ``backend`` cannot run here (None when it can): a missing package with its install hint, or a GPU-only
    kernel on a machine without CUDA. ``mechanism`` is the ``attention_mechanism`` value the message names
    (several name one backend); the first of them by default."""
    from diffusers.models.attention_dispatch import AttentionBackendName, _check_attention_backend_requirements

    if mechanism is None:
        mechanism = next(k for k, v in ATTENTION_BACKENDS.items() if v == backend)
    if not cuda and backend not in _CPU_BACKENDS:
        return (f"attention_mechanism {mechanism!r} runs only on CUDA GPUs and none is visible; use diffusers or "
                "native-math on the CPU")
    try:
        _check_attention_backend_requirements(AttentionBackendName(backend))
    except (RuntimeError, ImportError) as exc:
        return (f"attention_mechanism {mechanism!r} is not usable here ({str(exc).splitlines()[0]}); "
                f"{install_hint(backend)}")
    return None


def dispatched_modules(model: Any) -> int:
    """How many attention modules of ``model`` call diffusers' dispatcher (only those can change backend)."""
    return sum(1 for m in model.modules() if hasattr(getattr(m, "processor", None), "_attention_backend"))


def set_backend(model: Any, backend: str, *, cuda: bool, mechanism: str | None = None) -> None:
    """Make every attention module of ``model`` use ``backend``; raises :class:`TrainingSetupError` when it cannot
    run here or when the family's attention does not go through diffusers' dispatcher."""
    problem = backend_problem(backend, cuda=cuda, mechanism=mechanism)
    if problem is not None:
        raise TrainingSetupError(problem)
    if not dispatched_modules(model):
        raise TrainingSetupError(f"attention_mechanism: {type(model).__name__}'s attention does not go through "
                                 "diffusers' attention dispatcher, so its kernels cannot be chosen; set "
                                 "attention_mechanism: diffusers")
    # diffusers logs an "experimental feature" warning on every call; the choice is logged once here instead
    logging.getLogger("diffusers.models.modeling_utils").disabled = True
    try:
        model.set_attention_backend(backend)
    finally:
        logging.getLogger("diffusers.models.modeling_utils").disabled = False
    log.info("attention backend of %s: %s", type(model).__name__, backend)


def apply_training_backend(model: Any, core: Any, *, cuda: bool) -> bool:
    """Set the trained model's attention backend as ``core`` asks (nothing for the default), and check the
    validation-only SageAttention backend up front so a missing package fails before training, not at the first
    validation. Returns whether anything other than the default is used."""
    backend = training_backend(core)
    if backend is not None:
        set_backend(model, backend, cuda=cuda, mechanism=core.attention_mechanism)
    if uses_sage(core):
        problem = backend_problem(backend_name(core.attention_mechanism), cuda=cuda,
                                  mechanism=core.attention_mechanism)
        if problem is not None:
            raise TrainingSetupError(problem)
    return backend is not None or uses_sage(core)


@contextlib.contextmanager
def validation_backend(model: Any, core: Any, *, cuda: bool) -> Iterator[None]:
    """Inside the block, ``model`` renders with SageAttention when the run asks for it; the training backend is
    restored afterwards."""
    if not uses_sage(core):
        yield
        return
    set_backend(model, backend_name(core.attention_mechanism), cuda=cuda, mechanism=core.attention_mechanism)
    try:
        yield
    finally:
        restore = training_backend(core) or "native"
        set_backend(model, restore, cuda=cuda)


def cudnn_backward_problem(probe: Callable[[], None]) -> str | None:
    """Run ``probe`` (a forward and backward pass through PyTorch's cuDNN attention) and return why it failed, or
    None when cuDNN attention works on this build."""
    try:
        probe()
    except RuntimeError as exc:
        return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return None


def cudnn_probe(dtype: Any, head_dim: int = 128) -> Callable[[], None]:
    """A probe of cuDNN attention's backward pass with the shapes and layout diffusers' transformers use (heads
    transposed out of a (batch, tokens, heads, dim) tensor, so the inputs are not contiguous), checked against
    PyTorch's math kernel: an error or a wrong gradient fails it."""

    def probe() -> None:
        import torch
        from torch.nn.attention import SDPBackend, sdpa_kernel

        generator = torch.Generator(device="cuda").manual_seed(0)
        q, k, v = (torch.randn(1, 512, 8, head_dim, device="cuda", dtype=dtype, generator=generator)
                   .transpose(1, 2).requires_grad_(True) for _ in range(3))
        grads = []
        for backend in (SDPBackend.CUDNN_ATTENTION, SDPBackend.MATH):
            with sdpa_kernel([backend]):
                out = torch.nn.functional.scaled_dot_product_attention(q, k, v)
                grads.append(torch.autograd.grad(out.float().square().mean(), (q, k, v)))
        for fast, exact in zip(*grads, strict=True):
            if not torch.isfinite(fast).all() or not torch.allclose(fast.float(), exact.float(), atol=2e-2,
                                                                     rtol=5e-2):
                raise RuntimeError("cuDNN attention's gradients differ from the math kernel's")

    return probe


def avoid_broken_cudnn_attention(dtype: Any, probe: Callable[[], None] | None = None) -> str | None:
    """On a CUDA machine, keep PyTorch's SDPA away from cuDNN attention when its backward pass fails on this build
    (some CUDA/cuDNN combinations fail in Flux's backward); the other fused kernels are as fast. Returns the reason
    when it was turned off."""
    import torch

    if probe is None and not torch.cuda.is_available():
        return None
    problem = cudnn_backward_problem(probe or cudnn_probe(dtype))
    if problem is not None:
        torch.backends.cuda.enable_cudnn_sdp(False)
        log.warning("PyTorch's cuDNN attention is turned off for this run: its backward pass fails here (%s)",
                    problem)
    return problem
