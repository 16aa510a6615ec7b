"""The ``hf-hub`` publisher: the trained model, its model card and validation images on the Hugging Face Hub.

The token is ``HF_TOKEN`` when set, else the one the job's owner stored through the web UI's Hub login (see
:mod:`simpletuner.publishers.hf_hub.tokens`), else huggingface_hub's own lookup. This module is the entry point; it
imports nothing heavy.
"""

from __future__ import annotations

from typing import Any

import attrs

from simpletuner.core.hookspecs import RegisterPublisher, hookimpl
from simpletuner.core.hub_tokens import TOKEN_FILE_ENV
from simpletuner.core.options import PRIVILEGED, option
from simpletuner.core.specs import PublisherSpec, UserToken, lazy


@attrs.define(kw_only=True)
class HubOptions:
    """Options of the ``hf-hub`` publisher; the repository is ``hub_model_id``."""

    hub_private: bool = option(
        True, label="Private Hub repository",
        help="Create the repository private (only you and your organisation see it); false makes it public.",
        section="publishing",
    )
    hub_license: str | None = option(
        None, help="License id in the model card; the base model's license (by family and flavour) if unset.",
        section="publishing",
    )
    hub_tags: list[str] = option(factory=list, help="Extra tags of the model card.", section="publishing")
    hub_endpoint: str | None = option(
        None, help="Hub address for a private Hub or mirror; huggingface.co (or HF_ENDPOINT) if unset.",
        section="publishing", trust=PRIVILEGED,
    )
    hub_upload_retries: int = option(
        5, help="Retries of an upload that failed for a transient reason (network, server error, rate limit).",
        section="publishing", minimum=0,
    )
    hub_retry_backoff: float = option(
        2.0, help="Seconds before the first retry; each further retry waits twice as long.", section="publishing",
        minimum=0,
    )
    model_card_note: str | None = option(None, help="A paragraph added to the model card.", section="publishing")
    model_card_safe_for_work: bool = option(
        False, help="Whether the model is safe for work; false tags it not-for-all-audiences on the Hub.",
        section="publishing",
    )

    @hub_endpoint.validator
    def _check_endpoint(self, attribute: Any, value: str | None) -> None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError(f"$.{attribute.name}: expected an http(s) address such as https://huggingface.co, "
                             f"got {value!r}")


@hookimpl
def register_publishers(register: RegisterPublisher) -> None:
    """Register the Hugging Face Hub publisher."""
    register(PublisherSpec(
        name="hf-hub", title="Hugging Face Hub",
        description="Uploads the final model, config, validation images and a model card (and optionally "
        "checkpoints) to a Hub repository.",
        options=HubOptions, sends_data=True,
        factory=lazy("simpletuner.publishers.hf_hub.publisher:HubPublisher"),
        user_token=UserToken(title="Hugging Face Hub", file_env_var=TOKEN_FILE_ENV,
                             verify=lazy("simpletuner.publishers.hf_hub.login:verify_token"),
                             default_endpoint=lazy("simpletuner.publishers.hf_hub.login:default_endpoint"),
                             endpoint_option="hub_endpoint"),
    ))
