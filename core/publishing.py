"""Publishing a run's outputs through the publishers it names, in the background.

Publishers used: every name in ``publish_to``, plus ``hf-hub`` when ``push_to_hub`` is true. With
``push_checkpoints_to_hub`` each checkpoint also goes to every one of them that supports checkpoints. Uploads run
one after another on a background thread, so training never waits for the network; a failed upload is reported
(logged and passed to the event callback as ``publish_failed``) and never raised. After each successful upload
``on_uploaded(location, checkpoint_dir, step)`` runs (the engine passes ``HookScripts.after_upload``).

The engine's calls, one line each::

    publishing = Publishing.start(config, registry, output_dir, on_event=emit, on_uploaded=scripts.after_upload)
    publishing.checkpoint(checkpoint_dir, step)
    publishing.final([output_dir / "pytorch_lora_weights.safetensors"], validation_images, step)
    publishing.wait()   # before the process exits: returns {publisher: location} of the final uploads
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

from simpletuner.core.interfaces import Publisher, PublishRequest
from simpletuner.core.plugins import Registry
from simpletuner.core.specs import Kind, Usage, normalize_name

logger = logging.getLogger(__name__)

#: Receives ``published`` / ``publish_failed`` events; must not raise.
EventCallback = Callable[[dict[str, Any]], None]
#: Called after each successful upload with the remote location, the checkpoint folder (None for the final
#: model) and the step.
UploadedCallback = Callable[[str, Path | None, int], Any]

HUB_PUBLISHER = "hf-hub"


def publisher_names(config: Any) -> list[str]:
    """The publishers a config asks for, in order, without duplicates."""
    names = [normalize_name(n) for n in config.core.publish_to]
    if config.core.push_to_hub:
        names.append(HUB_PUBLISHER)
    return list(dict.fromkeys(names))


class Publishing:
    """The publishers of one run and their background queue."""

    def __init__(self, publishers: Mapping[str, Publisher], request_base: Mapping[str, Any], *,
                 checkpoints: bool, on_event: EventCallback | None = None,
                 on_uploaded: UploadedCallback | None = None) -> None:
        self._publishers = dict(publishers)
        self._base = dict(request_base)
        self._checkpoints = checkpoints
        self._on_event = on_event
        self._on_uploaded = on_uploaded
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="publish")
        self._final: dict[str, Future[str | None]] = {}
        self._pending: list[Future[str | None]] = []

    @classmethod
    def start(cls, config: Any, registry: Registry, output_dir: Path, *, on_event: EventCallback | None = None,
              on_uploaded: UploadedCallback | None = None) -> Publishing:
        """Build the publishers of ``config`` from the registry.

        Raises :class:`~simpletuner.core.errors.UnknownPluginError` for a name no plugin provides (the config
        check reports it first), so a misconfigured run fails before training rather than after.
        """
        publishers: dict[str, Publisher] = {}
        for name in publisher_names(config):
            spec = registry.get(Kind.PUBLISHER, name)
            publishers[name] = spec.build(config.options_for(spec))
        settings = {info.key: config.schema.unstructure(info.key, value)
                    for info, value, _source in config.effective() if not info.secret}
        settings["output_dir"] = str(output_dir)
        family = registry.find_model_family(config.core.model_family or "")
        flavour = family.flavour(config.core.model_flavour) if family else None
        base = {
            "config": settings,
            "model_family": family.name if family else str(config.core.model_family),
            "model_type": config.core.model_type,
            "base_model": config.core.pretrained_model_name_or_path or (flavour.pretrained if flavour else ""),
            "usage": family.usage if family else Usage(),
        }
        return cls(publishers, base, checkpoints=bool(config.core.push_checkpoints_to_hub), on_event=on_event,
                   on_uploaded=on_uploaded)

    @property
    def names(self) -> list[str]:
        """The publishers in use."""
        return list(self._publishers)

    def checkpoint(self, checkpoint_dir: Path, step: int) -> None:
        """Queue a checkpoint for every publisher that publishes checkpoints (when checkpoints are published)."""
        if not self._checkpoints:
            return
        for name, publisher in self._publishers.items():
            if publisher.supports_checkpoints:
                action = partial(publisher.publish_checkpoint, checkpoint_dir, step, self._base["config"])
                self._pending.append(self._executor.submit(self._run, name, "checkpoint", step, checkpoint_dir,
                                                           action))

    def final(self, files: Sequence[Path], validation_images: Sequence[Path], step: int) -> None:
        """Queue the final model (its files or folders), the validation images and the model card."""
        request = PublishRequest(files=list(files), validation_images=list(validation_images), step=step,
                                 **self._base)
        for name, publisher in self._publishers.items():
            self._final[name] = self._executor.submit(self._run, name, "model", step, None,
                                                      partial(publisher.publish, request))

    def wait(self) -> dict[str, str]:
        """Wait for every queued upload; return the location of each successful final publication."""
        for future in self._pending:
            future.result()
        locations = {name: future.result() for name, future in self._final.items()}
        self._executor.shutdown(wait=True)
        return {name: location for name, location in locations.items() if location is not None}

    def _run(self, name: str, what: str, step: int, checkpoint_dir: Path | None,
             action: Callable[[], str]) -> str | None:
        try:
            location = action()
        except Exception as exc:  # an upload problem is reported; training and the other publishers go on
            message = f"{type(exc).__name__}: {exc}"
            logger.warning("publishing the %s of step %d with %s failed: %s", what, step, name, message)
            self._emit({"event": "publish_failed", "publisher": name, "what": what, "step": step, "error": message})
            return None
        self._emit({"event": "published", "publisher": name, "what": what, "step": step, "location": location})
        if self._on_uploaded is not None:
            try:
                self._on_uploaded(location, checkpoint_dir, step)
            except Exception:
                logger.exception("the after-upload callback failed")
        return location

    def _emit(self, event: dict[str, Any]) -> None:
        if self._on_event is None:
            return
        try:
            self._on_event(event)
        except Exception:
            logger.exception("event callback failed for %s", event["event"])
