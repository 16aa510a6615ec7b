"""The frozen components of a run (encoders, VAE, scheduler): loaded on demand, parked on the CPU between uses,
freed when no longer needed."""

from __future__ import annotations

import gc
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from simpletuner.core.training.offload import GroupOffload


class Components:
    """Loads a family's components by name and keeps track of where they are."""

    def __init__(self, family: Any, sources: dict[str, str], dtype: Any, device: Any,
                 offload: GroupOffload | None = None) -> None:
        self.family = family
        self.sources = sources  # component name → pretrained location ("vae" may differ)
        self.dtype = dtype
        self.device = device
        self.offload = offload  # with group offloading, models stay in CPU memory and move group by group
        self.loaded: dict[str, Any] = {}

    def get(self, names: Sequence[str]) -> dict[str, Any]:
        """The named components on the run's device (or offloaded to it), loading those not loaded yet."""
        import torch

        for name in names:
            if name not in self.loaded:
                source = self.sources.get(name, self.sources["default"])
                device = "cpu" if self.offload is not None else self.device
                component = self.family.load_components(source, dtype=self.dtype, device=device, names=[name])[name]
                if self.offload is not None and isinstance(component, torch.nn.Module):
                    self.offload.apply(component, name)
                self.loaded[name] = component
            elif self._movable(name):
                self.loaded[name].to(self.device)
        return {name: self.loaded[name] for name in names}

    def park(self, names: Sequence[str]) -> None:
        """Move the named loaded components to the CPU (kept for the next use)."""
        for name in names:
            if name in self.loaded and self._movable(name):
                self.loaded[name].to("cpu")
        _release()

    def _movable(self, name: str) -> bool:
        # offloaded models are placed by their hooks; moving them whole would undo the offloading
        return hasattr(self.loaded[name], "to") and self.offload is None

    def free(self, names: Sequence[str]) -> None:
        """Forget the named components so their memory is returned."""
        for name in names:
            self.loaded.pop(name, None)
        _release()


def _release() -> None:
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
