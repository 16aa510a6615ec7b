"""Who may change or start an environment, and which of its privileged values a trusted user approved.

Every environment created through the server records its creator as owner. A user holding ``config.edit`` changes,
renames, deletes and starts the environments they own and those shared with them; ``config.edit.default`` is needed
for the ``default`` environment that others merge; ``config.edit.all`` reaches every environment (admins). An
environment without a record (made on disk, or before owners were recorded) is reached only with
``config.edit.all`` until an admin gives it an owner.

Privileged values (see :mod:`simpletuner.core.config.trust`) may be set, changed or unset only by holders of
``config.trusted``. A run starts only when each environment it reads has its privileged values approved exactly as
they are: the record keeps the digest of the approved values, so an edit on disk or an imported archive is held until
a trusted user approves what it now says.
"""

from __future__ import annotations

from collections.abc import Iterable

import falcon
import peewee

from simpletuner.core.config.trust import PrivilegedValues
from simpletuner.core.environments import DEFAULT_ENVIRONMENT
from simpletuner.ui.auth.permissions import Principal
from simpletuner.ui.db.fields import JSONTextField
from simpletuner.ui.db.models import BaseModel, User

TRUSTED = "config.trusted"
EDIT = "config.edit"
EDIT_DEFAULT = "config.edit.default"
EDIT_ALL = "config.edit.all"


class EnvironmentRecord(BaseModel):
    """An environment's owner, the users it is shared with, and the digest of its approved privileged values."""

    name = peewee.CharField(max_length=100, primary_key=True)
    owner = peewee.ForeignKeyField(User, null=True, on_delete="SET NULL")
    shared_with = JSONTextField(default=list)
    approved_digest = peewee.CharField(max_length=64, null=True)
    approved_by = peewee.CharField(max_length=64, null=True)
    approved_at = peewee.DoubleField(null=True)
    created_at = peewee.DoubleField()

    class Meta:
        table_name = "environment_records"


def record_of(name: str) -> EnvironmentRecord | None:
    """The record of an environment (None when it has none)."""
    return EnvironmentRecord.get_or_none(EnvironmentRecord.name == name)


def is_approved(values: PrivilegedValues, record: EnvironmentRecord | None) -> bool:
    """Whether ``values`` need no approval or are exactly what the record says a trusted user approved."""
    return values.empty or (record is not None and record.approved_digest == values.digest)


def may_change(principal: Principal, name: str, record: EnvironmentRecord | None = None) -> bool:
    """Whether ``principal`` may edit, rename, delete or start the environment ``name``."""
    if EDIT_ALL in principal.permissions:
        return True
    if name == DEFAULT_ENVIRONMENT:
        return EDIT_DEFAULT in principal.permissions
    if EDIT not in principal.permissions:
        return False
    record = record if record is not None else record_of(name)
    if record is None:
        return False
    return record.owner_id == principal.user_id or principal.user_id in (record.shared_with or [])


def require_change(principal: Principal, name: str) -> None:
    """Raise 403 naming what is needed when ``principal`` may not change the environment ``name``."""
    if may_change(principal, name):
        return
    if name == DEFAULT_ENVIRONMENT:
        needed = "the default environment is changed only by users holding config.edit.default (leads and admins)"
    else:
        needed = ("you may change and start only environments you created or that were shared with you; ask its "
                  "owner to share it, or copy it to an environment of your own")
    raise falcon.HTTPForbidden(title="Not your environment", description=f"environment {name!r}: {needed}")


def require_privileged_unchanged(principal: Principal, before: PrivilegedValues, after: PrivilegedValues) -> None:
    """Raise 403 listing the privileged keys a change would set, change or unset, unless ``principal`` may."""
    if TRUSTED in principal.permissions or before.digest == after.digest:
        return
    changed = sorted(_changed_keys(before, after))
    raise falcon.HTTPForbidden(
        title="Privileged options",
        description=(f"{', '.join(changed)}: privileged option(s) that run programs or choose where credentials or "
                     "data are sent; only users holding config.trusted may set, change or unset them. Leave them as "
                     "they are, or ask an admin"),
    )


def _changed_keys(before: PrivilegedValues, after: PrivilegedValues) -> set[str]:
    changed: set[str] = set()
    for part in set(before.parts) | set(after.parts):
        old, new = before.parts.get(part, {}), after.parts.get(part, {})
        changed |= {key for key in set(old) | set(new) if old.get(key) != new.get(key)}
    return changed


def claim(name: str, owner_id: int | None, now: float, approved: PrivilegedValues | None = None,
          approved_by: str | None = None) -> EnvironmentRecord:
    """Record a new environment: its owner and, when a trusted user wrote it, its privileged values as approved."""
    EnvironmentRecord.delete().where(EnvironmentRecord.name == name).execute()  # a stale record of a deleted one
    digest = approved.digest if approved is not None and not approved.empty else None
    return EnvironmentRecord.create(name=name, owner=owner_id, shared_with=[], created_at=now,
                                    approved_digest=digest, approved_by=approved_by if digest else None,
                                    approved_at=now if digest else None)


def approve(name: str, values: PrivilegedValues, by: str, now: float) -> None:
    """Approve exactly ``values`` for the environment ``name``."""
    if record_of(name) is None:
        EnvironmentRecord.create(name=name, owner=None, shared_with=[], created_at=now)
    EnvironmentRecord.update(approved_digest=values.digest, approved_by=by, approved_at=now).where(
        EnvironmentRecord.name == name).execute()


def after_trusted_write(name: str, before: PrivilegedValues, after: PrivilegedValues, principal: Principal,
                        now: float) -> None:
    """Keep the approval current when a trusted user changed privileged values that were approved before: they
    wrote the new ones themselves. Values pending approval stay pending (approving is a deliberate act)."""
    if before.digest == after.digest or TRUSTED not in principal.permissions:
        return
    if is_approved(before, record_of(name)):
        approve(name, after, principal.username, now)


def rename_record(old: str, new: str) -> None:
    """Move the record with its environment."""
    EnvironmentRecord.delete().where(EnvironmentRecord.name == new).execute()
    EnvironmentRecord.update(name=new).where(EnvironmentRecord.name == old).execute()


def forget(name: str) -> None:
    """Drop the record of a deleted environment."""
    EnvironmentRecord.delete().where(EnvironmentRecord.name == name).execute()


def share(name: str, user_ids: Iterable[int]) -> None:
    """Share the environment with exactly these users."""
    EnvironmentRecord.update(shared_with=sorted(set(user_ids))).where(EnvironmentRecord.name == name).execute()


def set_owner(name: str, owner_id: int | None, now: float) -> None:
    """Give an environment an owner (creating its record if it has none)."""
    if record_of(name) is None:
        EnvironmentRecord.create(name=name, owner=owner_id, shared_with=[], created_at=now)
    else:
        EnvironmentRecord.update(owner=owner_id).where(EnvironmentRecord.name == name).execute()


def approved_digests(names: Iterable[str]) -> dict[str, str]:
    """Environment name → digest of its approved privileged values, for those that have one."""
    rows = EnvironmentRecord.select().where(EnvironmentRecord.name.in_(list(names)))
    return {row.name: row.approved_digest for row in rows if row.approved_digest}
