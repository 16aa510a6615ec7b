"""Uploads through huggingface_hub's ``HfApi``: one commit per publication, retried with backoff."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from huggingface_hub import CommitOperationAdd, HfApi
from huggingface_hub.errors import HfHubHTTPError

from simpletuner.core.interfaces import Publisher, PublishRequest
from simpletuner.publishers.hf_hub.tokens import stored_token
from simpletuner.publishers.layout import checkpoint_files, generated_files, image_files, model_files
from simpletuner.publishers.model_card import CardSettings

logger = logging.getLogger(__name__)
T = TypeVar("T")

_TRANSIENT_STATUS = {408, 429, 500, 502, 503, 504}
_MAX_DELAY = 300.0


class HubPublisher(Publisher):
    """Publishes to the Hub repository ``hub_model_id`` of the run's config.

    Args:
        options: the :class:`~simpletuner.publishers.hf_hub.HubOptions`.
        api: an ``HfApi`` (built from ``hub_endpoint`` and the token :func:`stored_token` picks if None).
        sleep: how to wait between retries.
    """

    supports_checkpoints = True

    def __init__(self, options: Any, api: HfApi | None = None, sleep: Callable[[float], None] = time.sleep) -> None:
        self._options = options
        self._api = api or HfApi(endpoint=options.hub_endpoint, token=stored_token())
        self._sleep = sleep

    def publish(self, request: PublishRequest) -> str:
        """Create the repository (private unless ``hub_private`` is false) and commit the model files, config,
        validation images and model card at once; returns the repository's address."""
        repo_id = _repo_id(request.config)
        self._retry("create the repository", lambda: self._api.create_repo(
            repo_id, private=self._options.hub_private, repo_type="model", exist_ok=True))
        settings = CardSettings(repo_id=repo_id, license=self._options.hub_license, tags=tuple(self._options.hub_tags),
                                note=self._options.model_card_note,
                                safe_for_work=self._options.model_card_safe_for_work)
        operations = [CommitOperationAdd(path_in_repo=inside, path_or_fileobj=str(source))
                      for source, inside in model_files(request) + list(image_files(request).items())]
        operations += [CommitOperationAdd(path_in_repo=inside, path_or_fileobj=data)
                       for inside, data in generated_files(request, settings).items()]
        self._retry("upload the model", lambda: self._api.create_commit(
            repo_id, operations, commit_message=f"Model trained with SimpleTuner ({request.step} steps)",
            repo_type="model"))
        return f"{self._api.endpoint}/{repo_id}"

    def publish_checkpoint(self, checkpoint_dir: Path, step: int, config: Mapping[str, Any] | None = None) -> str:
        """Commit a checkpoint folder under ``checkpoints/<folder name>``; returns its address in the repository."""
        repo_id = _repo_id(config or {})
        checkpoint_dir = Path(checkpoint_dir)
        self._retry("create the repository", lambda: self._api.create_repo(
            repo_id, private=self._options.hub_private, repo_type="model", exist_ok=True))
        operations = [CommitOperationAdd(path_in_repo=inside, path_or_fileobj=str(source))
                      for source, inside in checkpoint_files(checkpoint_dir)]
        self._retry("upload the checkpoint", lambda: self._api.create_commit(
            repo_id, operations, commit_message=f"Checkpoint at step {step}", repo_type="model"))
        return f"{self._api.endpoint}/{repo_id}/tree/main/checkpoints/{checkpoint_dir.name}"

    def _retry(self, what: str, action: Callable[[], T]) -> T:
        attempts = self._options.hub_upload_retries + 1
        for attempt in range(attempts):
            try:
                return action()
            except Exception as exc:
                if attempt == attempts - 1 or not is_transient(exc):
                    raise RuntimeError(f"could not {what} on the Hub: {exc}") from exc
                delay = min(self._options.hub_retry_backoff * 2**attempt, _MAX_DELAY)
                logger.warning("could not %s (%s); retry %d of %d in %.1f s", what, exc, attempt + 1,
                               attempts - 1, delay)
                self._sleep(delay)
        raise AssertionError("unreachable")


def is_transient(exc: BaseException) -> bool:
    """Whether retrying may help: server errors, rate limits and network failures; not 4xx answers such as a bad
    token or a missing permission."""
    if isinstance(exc, HfHubHTTPError):
        response = exc.response
        return response is None or response.status_code in _TRANSIENT_STATUS
    import httpx2

    return isinstance(exc, httpx2.TransportError | ConnectionError | TimeoutError)


def _repo_id(config: Mapping[str, Any]) -> str:
    repo_id = config.get("hub_model_id")
    if not repo_id or not isinstance(repo_id, str):
        raise ValueError("hub_model_id is not set; set it to the repository to publish to, e.g. 'your-name/my-lora'")
    return repo_id
