"""``/api/hub/login``: the caller's Hugging Face Hub login (see :mod:`simpletuner.ui.workflow.hub_login`).

The token is write-only: no answer ever contains it. The Hub checked is the one the environment configures
(``hub_endpoint``), else huggingface_hub's (``HF_ENDPOINT`` or huggingface.co).
"""

from __future__ import annotations

import os
from typing import Any

import falcon

from simpletuner.core.config.loading import load_config
from simpletuner.core.config.trust import unapproved
from simpletuner.core.environments import DEFAULT_ENVIRONMENT
from simpletuner.core.errors import ConfigError
from simpletuner.ui.http import bad_request, field, only_keys, read_json
from simpletuner.ui.resources.base import Resource, send_json
from simpletuner.ui.resources.environments import get_environment, store_of
from simpletuner.ui.workflow.hub_login import HubLoginError, account, default_endpoint, log_in, log_out
from simpletuner.ui.workflow.ownership import approved_digests

PERMISSION = "job.start"  # the token publishes the caller's own jobs


class HubLogin(Resource):
    """``GET /api/hub/login?environment=``: whether the caller is logged in, as whom, and the Hub the environment
    uses; ``PUT`` ``{token, environment?}`` checks the token with a whoami call and stores it; ``DELETE`` forgets
    it."""

    permissions = {"GET": PERMISSION, "PUT": PERMISSION, "DELETE": PERMISSION}

    def _endpoint(self, name: str | None) -> str:
        if not name:
            return default_endpoint()
        env = get_environment(self, name)
        try:
            config, _ = load_config(store_of(self), env, self.ctx.registry)
        except ConfigError as exc:
            raise falcon.HTTPUnprocessableEntity(
                description=f"fix the configuration of {name} first (its hub_endpoint decides which Hub to log in "
                            "to): " + "; ".join(exc.problems)) from None
        endpoint = config.get("hub_endpoint")
        if endpoint:  # a token goes there: only to an endpoint a trusted user approved
            store = store_of(self)
            approvals = approved_digests([env.name, DEFAULT_ENVIRONMENT])
            if unapproved(self.ctx.workspace, store, env, self.ctx.registry, approvals):
                raise falcon.HTTPConflict(
                    title="Approval needed",
                    description=f"{name}'s hub_endpoint ({endpoint}) waits for approval by a user holding "
                                "config.trusted; no token is sent to it before")
        return endpoint or default_endpoint()

    def _state(self, user_id: int, endpoint: str) -> dict[str, Any]:
        found = account(self.ctx.workspace, user_id)
        return {"logged_in": found is not None, "account": found.to_json() if found else None,
                "endpoint": endpoint, "server_token": bool(os.environ.get("HF_TOKEN"))}

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        endpoint = self._endpoint(req.get_param("environment"))
        send_json(resp, self._state(self.principal(req).user_id, endpoint))

    def on_put(self, req: falcon.Request, resp: falcon.Response) -> None:
        data = read_json(req, self.ctx.settings.max_body_bytes)
        only_keys(data, {"token", "environment"})
        token = (field(data, "token") or "").strip()
        endpoint = self._endpoint(field(data, "environment", required=False))
        principal = self.principal(req)
        try:
            found = log_in(self.ctx.workspace, principal.user_id, token, endpoint, self.ctx.now())
        except HubLoginError as exc:
            self.audit(req, "hub_login", success=False, detail={"endpoint": endpoint, "status": exc.status})
            if exc.status == 400:
                raise bad_request(str(exc)) from None
            raise falcon.HTTPError(falcon.code_to_http_status(exc.status), title="Hub login failed",
                                   description=str(exc)) from None
        self.audit(req, "hub_login", detail={"endpoint": endpoint, "account": found.name})
        send_json(resp, self._state(principal.user_id, endpoint))

    def on_delete(self, req: falcon.Request, resp: falcon.Response) -> None:
        principal = self.principal(req)
        removed = log_out(self.ctx.workspace, principal.user_id)
        self.audit(req, "hub_logout", detail={"removed": removed})
        send_json(resp, self._state(principal.user_id, default_endpoint()) | {"removed": removed})
