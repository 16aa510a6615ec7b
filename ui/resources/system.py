"""Health, training status, the plugin registry, the audit log, the registration and outbound policies."""

from __future__ import annotations

import falcon

from simpletuner.core.errors import SimpleTunerError
from simpletuner.core.outbound import OutboundPolicy
from simpletuner.ui.auth import audit
from simpletuner.ui.auth.permissions import AUTHENTICATED, PUBLIC
from simpletuner.ui.auth.users import AccountError, levels_by_name
from simpletuner.ui.db.models import AuditEvent, Setting
from simpletuner.ui.http import bad_request, boolean, int_param, only_keys, read_json
from simpletuner.ui.jobs.retention import parse_retention, retention_settings, save_retention
from simpletuner.ui.resources.base import Resource, http_error, send_json
from simpletuner.ui.workflow.outbound_policy import outbound_policy, set_outbound_policy


class Health(Resource):
    """``GET /health``: the process answers (no authentication, no database)."""

    permissions = {"GET": PUBLIC}

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        send_json(resp, {"status": "ok"})


class TrainingStatus(Resource):
    """``GET /api/training/status``: the running job, the queue and the last finished job (see
    :func:`simpletuner.ui.jobs.views.training_status`)."""

    permissions = {"GET": "config.view"}

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        send_json(resp, self.ctx.training_status())


def plugins_json(registry) -> dict:  # type: ignore[no-untyped-def]
    """The registry by kind, and the plugins that failed with their errors."""
    kinds: dict[str, list[dict]] = {}
    failed = []
    for row in registry.rows():
        if row.error is None:
            kinds.setdefault(row.kind, []).append(row.to_json())
        else:
            failed.append(row.to_json())
    return {"kinds": kinds, "failed": failed}


class Plugins(Resource):
    """``GET /api/plugins``: installed plugins by kind, plus failures."""

    permissions = {"GET": AUTHENTICATED}

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        send_json(resp, plugins_json(self.ctx.registry))


class AuditLog(Resource):
    """``GET /api/audit?limit=&before=``: security events, newest first."""

    permissions = {"GET": "audit.view"}

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        limit = int_param(req.get_param("limit"), "limit", 100, 1000)
        before = req.get_param("before")
        query = AuditEvent.select().order_by(AuditEvent.id.desc()).limit(limit)
        if before is not None:
            query = query.where(AuditEvent.id < int_param(before, "before", 0, 2**62))
        send_json(resp, {"events": [audit.to_json(e) for e in query]})


class Registration(Resource):
    """``GET/PATCH /api/settings/registration``: ``{enabled, default_level}`` for self-registration."""

    permissions = {"GET": "settings.manage", "PATCH": "settings.manage"}

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        send_json(resp, Setting.get(Setting.key == "registration").value)

    def on_patch(self, req: falcon.Request, resp: falcon.Response) -> None:
        data = read_json(req, self.ctx.settings.max_body_bytes)
        only_keys(data, {"enabled", "default_level"})
        value = dict(Setting.get(Setting.key == "registration").value)
        if "enabled" in data:
            value["enabled"] = boolean(data, "enabled")
        if "default_level" in data:
            level = data["default_level"]
            if not isinstance(level, str):
                raise falcon.HTTPBadRequest(description="default_level must be a level name")
            try:
                levels_by_name([level])
            except AccountError as exc:
                raise http_error(exc) from None
            value["default_level"] = level
        Setting.update(value=value).where(Setting.key == "registration").execute()
        self.audit(req, "registration_changed", detail=value)
        send_json(resp, value)


class OutboundSettings(Resource):
    """``GET/PATCH /api/settings/outbound`` ``{allow_private, allowed_hosts}``: where the server may connect for
    requests such as remote dataset tests and scans (see :mod:`simpletuner.core.outbound`). Public addresses are
    always allowed; ``allow_private`` adds private networks; ``allowed_hosts`` lists hosts (``name``,
    ``name:port``, addresses) and networks (``10.0.0.0/8``), the only way to allow loopback or link-local ones."""

    permissions = {"GET": "settings.manage", "PATCH": "settings.manage"}

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        send_json(resp, outbound_policy().to_json())

    def on_patch(self, req: falcon.Request, resp: falcon.Response) -> None:
        data = read_json(req, self.ctx.settings.max_body_bytes)
        only_keys(data, {"allow_private", "allowed_hosts"})
        try:
            policy = OutboundPolicy.from_json(outbound_policy().to_json() | data)
        except ValueError as exc:
            raise bad_request(str(exc)) from None
        set_outbound_policy(policy)
        self.audit(req, "outbound_policy_changed", detail=policy.to_json())
        send_json(resp, policy.to_json())


class RetentionSettings(Resource):
    """``GET/PATCH /api/settings/retention`` ``{audit_days, audit_max_events, steps_per_finished_job,
    events_per_finished_job}``: how much history the server keeps (see :mod:`simpletuner.ui.jobs.retention`)."""

    permissions = {"GET": "settings.manage", "PATCH": "settings.manage"}

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        send_json(resp, retention_settings().to_json())

    def on_patch(self, req: falcon.Request, resp: falcon.Response) -> None:
        data = read_json(req, self.ctx.settings.max_body_bytes)
        try:
            settings = parse_retention(data)
        except SimpleTunerError as exc:
            raise bad_request(str(exc)) from None
        save_retention(settings)
        self.audit(req, "retention_changed", detail=settings.to_json())
        send_json(resp, settings.to_json())
