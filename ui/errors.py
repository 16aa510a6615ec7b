"""The one place user errors become HTTP answers: a typed error from the kernel maps to its status by class, never
by its message's wording. Errors are JSON for API clients and a page for browsers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import falcon
import jinja2
from falcon.app_helpers import default_serialize_error

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


def error_serializer(templates: jinja2.Environment) -> Callable[[falcon.Request, falcon.Response, falcon.HTTPError],
                                                                 None]:
    """Falcon error serializer: browsers (which prefer HTML to JSON) get the error as a page of the app, everyone
    else Falcon's JSON. Without it a browser that lists XML in its Accept header is shown a raw XML document."""

    def serialize(req: falcon.Request, resp: falcon.Response, exc: falcon.HTTPError) -> None:
        if req.client_prefers((falcon.MEDIA_JSON, falcon.MEDIA_HTML)) != falcon.MEDIA_HTML:
            default_serialize_error(req, resp, exc)
            return
        resp.content_type = falcon.MEDIA_HTML
        resp.text = templates.get_template("error.html").render(
            title=exc.title, description=exc.description, principal=getattr(req.context, "principal", None),
            csrf=None)

    return serialize
