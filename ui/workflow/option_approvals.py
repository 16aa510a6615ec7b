"""The approval state of each privileged option of an environment, for the Configuration page: whether the value a
run would use is approved, waits for a trusted user's approval, or is unset; what a change by the viewer would lead
to; and, per environment whose values a run reads, the approval record itself (who approved what, and the digest a
trusted user approves).

The states come from the approval records (:mod:`~simpletuner.ui.workflow.ownership`) and the environment's files as
they are now, exactly as the job guard checks them before a run.
"""

from __future__ import annotations

from typing import Any

from simpletuner.core.config.trust import CONFIG_PART, merged_environments, own_privileged
from simpletuner.core.environments import Environment, EnvironmentStore
from simpletuner.core.plugins import Registry
from simpletuner.core.workspace import Workspace
from simpletuner.ui.auth.permissions import Principal
from simpletuner.ui.workflow import ownership

#: A privileged value is set and approved as it is.
APPROVED = "approved"
#: A privileged value is set and waits for a trusted user's approval (a run is refused until then).
WAITING = "waiting"
#: The option is not set: nothing to approve.
UNSET = "unset"

#: What saving a change of a privileged option leads to, for the user viewing the page.
CHANGE_APPROVED = "approved"  # a trusted user's change to approved values is approved as written
CHANGE_WAITING = "waiting"  # a trusted user's change to values still waiting keeps waiting
CHANGE_REFUSED = "refused"  # only users holding config.trusted may change privileged values


def option_approvals(workspace: Workspace, store: EnvironmentStore, env: Environment, registry: Registry,
                     principal: Principal, keys: list[str]) -> dict[str, Any]:
    """The approval view of ``env`` for ``principal``.

    ``keys`` are the privileged option keys shown. Returns ``{"options": {key: {"state", "environment"}},
    "environments": [{"name", "state", "keys", "digest", "approved_by", "approved_at"}], "on_change",
    "can_approve"}``, where an option's ``environment`` is the one whose file sets it (``default`` for a value a
    merging environment takes from there) and an environment's ``keys`` are all its privileged values that an
    approval covers (its datasets' too), as ``part: key``.
    """
    trusted = ownership.TRUSTED in principal.permissions
    environments = []
    options = {key: {"state": UNSET, "environment": None} for key in keys}
    for each in merged_environments(store, env):  # default first, so the environment's own values win
        values = own_privileged(workspace, store, each, registry)
        record = ownership.record_of(each.name)
        approved = ownership.is_approved(values, record)
        state = UNSET if values.empty else APPROVED if approved else WAITING
        environments.append({
            "name": each.name, "state": state, "keys": values.keys(),
            "digest": values.digest if not values.empty else None,
            "approved_by": record.approved_by if record is not None and approved and not values.empty else None,
            "approved_at": record.approved_at if record is not None and approved and not values.empty else None,
        })
        for key in values.parts.get(CONFIG_PART, {}):
            if key in options:
                options[key] = {"state": state, "environment": each.name}
    own = environments[-1]
    if not trusted:
        on_change = CHANGE_REFUSED
    else:
        on_change = CHANGE_WAITING if own["state"] == WAITING else CHANGE_APPROVED
    return {"options": options, "environments": environments, "on_change": on_change, "can_approve": trusted}
