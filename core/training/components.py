"""The frozen components of a run (encoders, VAE, scheduler): loaded on demand, parked on the CPU between uses,
freed when no longer needed."""

from __future__ import annotations

import gc
from collections.abc import Sequence
from typing import Any


class Components:
    """Loads a family's components by name and keeps track of where they are."""

    def __init__(self, family: Any, sources: dict[str, str], dtype: Any, device: Any) -> None:
        self.family = family
        self.sources = sources  # component name → pretrained location ("vae" may differ)
        self.dtype = dtype
        self.device = device
        self.loaded: dict[str, Any] = {}

    def get(self, names: Sequence[str]) -> dict[str, Any]:
        """The named components on the run's device, loading those not loaded yet."""
        for name in names:
            if name not in self.loaded:
                source = self.sources.get(name, self.sources["default"])
                self.loaded.update(self.family.load_components(source, dtype=self.dtype, device=self.device,
                                                               names=[name]))
            elif hasattr(self.loaded[name], "to"):
                self.loaded[name].to(self.device)
        return {name: self.loaded[name] for name in names}

    def park(self, names: Sequence[str]) -> None:
        """Move the named loaded components to the CPU (kept for the next use)."""
        for name in names:
            if name in self.loaded and hasattr(self.loaded[name], "to"):
                self.loaded[name].to("cpu")
        _release()

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
