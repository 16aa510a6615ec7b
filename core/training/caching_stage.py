"""The caching stage of a run: encode what is missing on the main process, with progress, then free encoders."""

from __future__ import annotations

import sys
from typing import Any

from simpletuner.core.events import EventWriter
from simpletuner.core.training.caching import encode_latents, encode_texts, missing_latents, missing_texts
from simpletuner.core.training.components import Components
from simpletuner.core.training.data import TrainingData

#: Captions per text-encoder batch (images per VAE batch are the config's ``vae_batch_size``).
ENCODE_BATCH = 4


class _Progress:
    """Throttled ``cache_progress`` events plus a tqdm bar on a terminal."""

    def __init__(self, events: EventWriter, kind: str, total: int) -> None:
        from tqdm.auto import tqdm

        self.events, self.kind, self.total = events, kind, total
        self.every = max(1, total // 100)
        self.last = 0
        self.bar = tqdm(total=total, desc=f"caching {kind}", unit="item", disable=not sys.stderr.isatty())

    def __call__(self, kind: str, done: int, total: int) -> None:
        self.bar.update(done - self.bar.n)
        if done - self.last >= self.every or done == total:
            self.events.emit("cache_progress", kind=kind, done=done, total=total)
            self.last = done

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


def fill_caches(data: TrainingData, family: Any, components: Components, config: Any, registry: Any,
                events: EventWriter, accelerator: Any) -> dict[str, int]:
    """Encode missing text embeddings and latents (main process only; the others wait); returns encoder calls."""
    calls = {"text": 0, "latents": 0}
    if accelerator.is_main_process:
        text_jobs = data.all_text_jobs()
        texts = missing_texts(text_jobs)
        if texts:
            progress = _Progress(events, "text", len(texts))
            encoders = components.get(family.text_components)
            _quantize_encoders(encoders, family, config, registry)
            calls["text"] = encode_texts(texts, lambda p: family.encode_text(encoders, p), ENCODE_BATCH, progress)
            progress.close()
            components.park(family.text_components)
        events.emit("cache_ready", kind="text", total=len({j.key for j in text_jobs}), encoded=len(texts),
                    reused=len({j.key for j in text_jobs}) - len(texts), encoder_calls=calls["text"])
        latent_jobs = data.all_latent_jobs()
        latents = missing_latents(latent_jobs)
        if latents:
            progress = _Progress(events, "latents", len(latents))
            vae = components.get(family.latent_components)
            calls["latents"] = encode_latents(latents, lambda px: family.encode_latents(vae, px),
                                              config.core.vae_batch_size, progress)
            progress.close()
            components.park(family.latent_components)
        events.emit("cache_ready", kind="latents", total=len(latent_jobs), encoded=len(latents),
                    reused=len(latent_jobs) - len(latents), encoder_calls=calls["latents"])
    accelerator.wait_for_everyone()
    return calls
