"""The security audit log: one row per login, failure, key creation, user, level, provider or setting change."""

from __future__ import annotations

import logging
import time
from typing import Any

from simpletuner.ui.db.models import AuditEvent

logger = logging.getLogger("simpletuner.audit")


def record(event: str, *, actor: str | None = None, target: str | None = None, ip: str | None = None,
           success: bool = True, detail: dict[str, Any] | None = None, now: float | None = None) -> None:
    """Store an audit event and log it (never a secret in ``detail``)."""
    AuditEvent.create(at=now if now is not None else time.time(), event=event, actor=actor,
                      target=(target or "")[:200] or None, ip=ip, success=success, detail=detail)
    logger.info("%s actor=%s target=%s ip=%s success=%s", event, actor, target, ip, success)


def to_json(row: AuditEvent) -> dict[str, Any]:
    """An event as JSON."""
    return {"id": row.id, "at": row.at, "event": row.event, "actor": row.actor, "target": row.target,
            "ip": row.ip, "success": row.success, "detail": row.detail}
