"""The caching stage of a run: every process encodes its share of what is missing, with progress, then frees the
encoders; the caches' manifests record what was written."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from simpletuner.core.events import EventWriter
from simpletuner.core.training.caching import (
    Missing,
    encode_latents,
    encode_texts,
    missing_latents,
    missing_texts,
    record_written,
)
from simpletuner.core.training.components import Components
from simpletuner.core.training.data import TrainingData
from simpletuner.core.training.ondemand import OnDemandLatents

#: Captions per text-encoder batch (images per VAE batch are the config's ``vae_batch_size``).
ENCODE_BATCH = 4


class _Progress:
    """Throttled ``cache_progress`` events plus a tqdm bar on a terminal, for one process's share of ``total``
    items; the events estimate the whole from it (``processes`` shares going at about the same pace)."""

    def __init__(self, events: EventWriter, kind: str, total: int, processes: int = 1) -> None:
        from tqdm.auto import tqdm

        self.events, self.kind, self.total, self.processes = events, kind, total, processes
        self.every = max(1, total // 100)
        self.last = 0
        self.bar = tqdm(total=total, desc=f"caching {kind}", unit="item", disable=not sys.stderr.isatty())

    def __call__(self, kind: str, done: int, share: int) -> None:
        estimate = self.total if done == share else min(self.total, done * self.processes)
        self.bar.update(estimate - self.bar.n)
        if estimate - self.last >= self.every or done == share:
            self.events.emit("cache_progress", kind=kind, done=estimate, total=self.total)
            self.last = estimate

    def close(self) -> None:
        self.bar.close()


def _quantize_encoders(encoders: dict[str, Any], family: Any, config: Any, registry: Any) -> None:
    """Apply ``text_encoder_N_precision`` to the family's N-th text encoder (tokenizers are skipped)."""
    core = config.core
    models = [name for name in family.text_components if hasattr(encoders[name], "parameters")]
    for index, name in enumerate(models[:2], start=1):
        precision = getattr(core, f"text_encoder_{index}_precision")
        if precision == "no_change":
            continue
        spec = registry.quantizer_for(precision)
        assert spec is not None, "config check guarantees an installed quantizer"
        spec.build(config.options_for(spec)).quantize(encoders[name], precision)


def record_in_turn(accelerator: Any, record: Callable[[], None]) -> None:
    """Each process adds what it encoded to the manifests (``record``), one after the other (no update is lost)."""
    for rank in range(accelerator.num_processes):
        if rank == accelerator.process_index:
            record()
        if accelerator.num_processes > 1:
            accelerator.wait_for_everyone()


def sum_over_processes(accelerator: Any, counts: list[int]) -> list[int]:
    if accelerator.num_processes == 1:
        return counts
    import torch

    return [int(v) for v in accelerator.reduce(torch.tensor(counts, device=accelerator.device), reduction="sum")]


def _defer_latents(data: TrainingData, check: Missing, family: Any, components: Components, config: Any,
                   events: EventWriter, main: bool) -> int:
    """Leave the missing latents to the batch reader (:mod:`simpletuner.core.training.ondemand`), with a VAE of its
    own loaded when it first needs one; no encoder call is made here."""
    def encoder() -> Any:
        own = Components(family, components.sources, components.dtype, components.device, components.offload)
        vae = own.get(family.latent_components)
        return lambda pixels: family.encode_latents(vae, pixels)

    data.ondemand = OnDemandLatents(data, check.jobs, encoder, config.core.vae_batch_size) if check.jobs else None
    if main:
        events.emit("cache_ready", kind="latents", total=check.checked, encoded=0,
                    reused=check.checked - len(check.jobs), deferred=len(check.jobs), encoder_calls=0)
    return 0


def fill_caches(data: TrainingData, family: Any, components: Components, config: Any, registry: Any,
                events: EventWriter, accelerator: Any) -> dict[str, int]:
    """Encode the missing text embeddings, then the missing latents: every process checks the caches, then
    encodes every n-th missing entry (n processes), so none waits idle; returns the encoder calls of all processes.
    Only the main process records what it verified and reports progress. With ``vae_cache_ondemand`` the missing
    latents are left to training (``data.ondemand``)."""
    rank, processes, main = accelerator.process_index, accelerator.num_processes, accelerator.is_main_process
    text_check = missing_texts(data.caches, [data.empty_text], record=main)
    texts = text_check.jobs
    latent_check = missing_latents(data.caches, record=main)
    latents = latent_check.jobs
    accelerator.wait_for_everyone()  # every process has checked before any writes

    text_calls = latent_calls = 0
    mine = texts[rank::processes]
    if mine:
        progress = _Progress(events, "text", len(texts), processes)
        encoders = components.get(family.text_components)
        _quantize_encoders(encoders, family, config, registry)
        text_calls = encode_texts(mine, lambda p: family.encode_text(encoders, p), ENCODE_BATCH, progress)
        progress.close()
        components.park(family.text_components)
    record_in_turn(accelerator, lambda: record_written(mine))
    [text_calls] = sum_over_processes(accelerator, [text_calls])
    if main:
        events.emit("cache_ready", kind="text", total=text_check.checked, encoded=len(texts),
                    reused=text_check.checked - len(texts), encoder_calls=text_calls)

    if config.core.vae_cache_ondemand:
        return {"text": text_calls, "latents": _defer_latents(data, latent_check, family, components, config,
                                                               events, main)}
    mine_latents = latents[rank::processes]
    if mine_latents:
        progress = _Progress(events, "latents", len(latents), processes)
        vae = components.get(family.latent_components)
        latent_calls = encode_latents(mine_latents, lambda px: family.encode_latents(vae, px),
                                      config.core.vae_batch_size, progress)
        progress.close()
        components.park(family.latent_components)
    record_in_turn(accelerator, lambda: record_written(mine_latents))

    [latent_calls] = sum_over_processes(accelerator, [latent_calls])
    if main:
        events.emit("cache_ready", kind="latents", total=latent_check.checked, encoded=len(latents),
                    reused=latent_check.checked - len(latents), encoder_calls=latent_calls)
    accelerator.wait_for_everyone()
    return {"text": text_calls, "latents": latent_calls}
