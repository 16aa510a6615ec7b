"""User errors reach HTTP clients with a status chosen by their class in one place (never by their wording)."""

from __future__ import annotations

import pytest

from simpletuner.core.errors import (
    ConfigError,
    DataBackendError,
    EnvironmentExists,
    EnvironmentNotFound,
    UnknownPluginError,
)
from simpletuner.ui.errors import http_error

pytestmark = pytest.mark.timeout(10)


@pytest.mark.parametrize(("error", "status"), [
    (EnvironmentNotFound("no environment 'x'"), "404 Not Found"),
    (EnvironmentExists("environment 'x' already exists"), "409 Conflict"),
    (ConfigError(["$.lora_rank: expected int"]), "422 Unprocessable Entity"),
    (DataBackendError("bucket 'b' does not exist"), "400 Bad Request"),
    (UnknownPluginError("unknown tracker 'wandbb'"), "400 Bad Request"),
])
def test_each_error_class_has_its_status(error: Exception, status: str) -> None:
    answer = http_error(error)  # type: ignore[arg-type]
    assert answer.status == status
    assert answer.description and ("lora_rank" in answer.description or str(error) == answer.description)


def test_a_message_that_merely_says_already_exists_is_not_a_conflict() -> None:
    assert http_error(DataBackendError("the key already exists in the bucket")).status == "400 Bad Request"
