"""``/api/hub/login?publisher=``: the caller's login to a publisher that publishes as each user (the Hugging Face
Hub by default; see :mod:`simpletuner.ui.workflow.publisher_logins`).

The token is write-only: no answer ever contains it. The service checked is the one the environment configures
(the publisher's endpoint option, such as ``hub_endpoint``), else the publisher's default.
"""

from __future__ import annotations

import os
from typing import Any

import falcon

from simpletuner.core.config.loading import load_config
from simpletuner.core.config.trust import unapproved
from simpletuner.core.environments import DEFAULT_ENVIRONMENT
from simpletuner.core.errors import ConfigError
from simpletuner.core.interfaces import TokenRefused
from simpletuner.core.specs import PublisherSpec, normalize_name
from simpletuner.ui.http import bad_request, field, only_keys, read_json
from simpletuner.ui.resources.base import Resource, send_json
from simpletuner.ui.resources.environments import get_environment, store_of
from simpletuner.ui.workflow.ownership import approved_digests
from simpletuner.ui.workflow.publisher_logins import account, log_in, log_out

PERMISSION = "job.start"  # the token publishes the caller's own jobs
DEFAULT_PUBLISHER = "hf-hub"


class HubLogin(Resource):
    """``GET /api/hub/login?environment=&publisher=``: whether the caller is logged in, as whom, and the endpoint
    the environment uses; ``PUT`` ``{token, environment?, publisher?}`` has the publisher check the token and stores
    it; ``DELETE ?publisher=`` forgets it."""

    permissions = {"GET": PERMISSION, "PUT": PERMISSION, "DELETE": PERMISSION}

    def _publisher(self, name: str | None) -> PublisherSpec:
        wanted = normalize_name(name or DEFAULT_PUBLISHER)
        spec = self.ctx.registry.publishers().get(wanted)
        if spec is None or spec.user_token is None:
            raise falcon.HTTPNotFound(description=f"no installed publisher {wanted!r} takes a login of each user")
        return spec

    def _endpoint(self, spec: PublisherSpec, name: str | None) -> str:
        assert spec.user_token is not None
        option = spec.user_token.endpoint_option
        if not name or option is None:
            return spec.user_token.default_endpoint()
        env = get_environment(self, name)
        try:
            config, _ = load_config(store_of(self), env, self.ctx.registry)
        except ConfigError as exc:
            raise falcon.HTTPUnprocessableEntity(
                description=f"fix the configuration of {name} first (its {option} decides where to log in): "
                            + "; ".join(exc.problems)) from None
        endpoint = config.get(option)
        if endpoint:  # a token goes there: only to an endpoint a trusted user approved
            approvals = approved_digests([env.name, DEFAULT_ENVIRONMENT])
            if unapproved(self.ctx.workspace, store_of(self), env, self.ctx.registry, approvals):
                raise falcon.HTTPConflict(
                    title="Approval needed",
                    description=f"{name}'s {option} ({endpoint}) waits for approval by a user holding "
                                "config.trusted; no token is sent to it before")
        return str(endpoint or spec.user_token.default_endpoint())

    def _state(self, spec: PublisherSpec, user_id: int, endpoint: str) -> dict[str, Any]:
        found = account(self.ctx.workspace, spec.name, user_id)
        return {"logged_in": found is not None, "account": found.to_json() if found else None,
                "endpoint": endpoint, "server_token": bool(os.environ.get("HF_TOKEN"))}

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        spec = self._publisher(req.get_param("publisher"))
        endpoint = self._endpoint(spec, req.get_param("environment"))
        send_json(resp, self._state(spec, self.principal(req).user_id, endpoint))

    def on_put(self, req: falcon.Request, resp: falcon.Response) -> None:
        data = read_json(req, self.ctx.settings.max_body_bytes)
        only_keys(data, {"token", "environment", "publisher"})
        token = (field(data, "token") or "").strip()
        spec = self._publisher(field(data, "publisher", required=False))
        endpoint = self._endpoint(spec, field(data, "environment", required=False))
        principal = self.principal(req)
        try:
            found = log_in(self.ctx.workspace, spec, principal.user_id, token, endpoint, self.ctx.now())
        except TokenRefused as exc:
            self.audit(req, "hub_login", success=False,
                       detail={"publisher": spec.name, "endpoint": endpoint, "status": exc.status})
            if exc.status == 400:
                raise bad_request(str(exc)) from None
            raise falcon.HTTPError(falcon.code_to_http_status(exc.status), title="Login failed",
                                   description=str(exc)) from None
        self.audit(req, "hub_login", detail={"publisher": spec.name, "endpoint": endpoint, "account": found.name})
        send_json(resp, self._state(spec, principal.user_id, endpoint))

    def on_delete(self, req: falcon.Request, resp: falcon.Response) -> None:
        spec = self._publisher(req.get_param("publisher"))
        assert spec.user_token is not None
        principal = self.principal(req)
        removed = log_out(self.ctx.workspace, spec.name, principal.user_id)
        self.audit(req, "hub_logout", detail={"publisher": spec.name, "removed": removed})
        send_json(resp, self._state(spec, principal.user_id, spec.user_token.default_endpoint()) | {"removed": removed})
