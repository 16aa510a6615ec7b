"""What resources share: access to the principal, JSON answers, audit entries and error mapping."""

from __future__ import annotations

from typing import Any

import falcon

from simpletuner.ui.auth import audit
from simpletuner.ui.auth.permissions import Principal
from simpletuner.ui.auth.users import AccountError
from simpletuner.ui.context import AppContext


class Resource:
    """Base of resources: holds the app context. Subclasses set ``permissions`` = {METHOD: requirement}."""

    permissions: dict[str, str | tuple[str, ...]] = {}
    page = False

    def __init__(self, context: AppContext) -> None:
        self.ctx = context

    def principal(self, req: falcon.Request) -> Principal:
        """The authenticated principal (the middleware guarantees one on non-public routes)."""
        principal = req.context.principal
        assert principal is not None
        return principal

    def audit(self, req: falcon.Request, event: str, *, target: str | None = None, success: bool = True,
              actor: str | None = None, detail: dict[str, Any] | None = None) -> None:
        """Record a security event for this request."""
        principal = req.context.principal
        audit.record(event, actor=actor or (principal.username if principal else None), target=target,
                     ip=req.context.client_ip, success=success, detail=detail, now=self.ctx.now())


def send_json(resp: falcon.Response, data: Any, status: int = 200) -> None:
    """A JSON answer."""
    resp.media = data
    resp.status = status


def http_error(exc: AccountError) -> falcon.HTTPError:
    """The HTTP error that fits an AccountError."""
    return falcon.HTTPError(exc.status, title=falcon.code_to_http_status(exc.status)[4:], description=str(exc))
