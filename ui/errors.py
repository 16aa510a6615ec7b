"""The one place user errors become HTTP answers: a typed error from the kernel maps to its status by class, never
by its message's wording."""

from __future__ import annotations

from typing import Any

import falcon

from simpletuner.core.errors import AlreadyExists, ConfigError, NotFound, SimpleTunerError

#: Error class → (status, title); the first class an error is an instance of wins.
STATUSES: tuple[tuple[type[SimpleTunerError], int, str], ...] = (
    (NotFound, 404, "Not found"),
    (AlreadyExists, 409, "Already exists"),
    (ConfigError, 422, "Invalid configuration"),
    (SimpleTunerError, 400, "Not possible"),
)


def http_error(exc: SimpleTunerError) -> falcon.HTTPError:
    """The HTTP error of a user error: its status by class and its message as the description."""
    status, title = next((s, t) for cls, s, t in STATUSES if isinstance(exc, cls))
    if isinstance(exc, ConfigError):
        return falcon.HTTPError(falcon.code_to_http_status(status), title=title, description="; ".join(exc.problems))
    return falcon.HTTPError(falcon.code_to_http_status(status), title=title, description=str(exc))


def handle_user_error(req: falcon.Request, resp: falcon.Response, exc: SimpleTunerError, params: Any) -> None:
    """Falcon error handler: a user error that a resource did not turn into an answer itself still gets its status
    and message instead of a 500."""
    raise http_error(exc)
