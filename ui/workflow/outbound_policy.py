"""The admin's outbound policy (see :mod:`simpletuner.core.outbound`), kept in the ``settings`` table under
``outbound`` so every worker reads the same one."""

from __future__ import annotations

from simpletuner.core.outbound import OutboundPolicy
from simpletuner.ui.db.models import Setting

OUTBOUND_KEY = "outbound"


def outbound_policy() -> OutboundPolicy:
    """The stored policy; the strict default (public addresses only) when none is stored or it cannot be read."""
    row = Setting.get_or_none(Setting.key == OUTBOUND_KEY)
    try:
        return OutboundPolicy.from_json(row.value) if row is not None else OutboundPolicy()
    except ValueError:
        return OutboundPolicy()


def set_outbound_policy(policy: OutboundPolicy) -> None:
    """Store the policy (already checked)."""
    Setting.insert(key=OUTBOUND_KEY, value=policy.to_json()).on_conflict(
        conflict_target=[Setting.key], update={Setting.value: policy.to_json()}).execute()
