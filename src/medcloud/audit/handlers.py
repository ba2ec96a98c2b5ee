"""Events the audit context consumes."""

from __future__ import annotations

from collections.abc import Sequence

from medcloud.audit import service
from medcloud.audit.keys import signer_for
from medcloud.config import Settings
from medcloud.platform.audit import AuditRecorded
from medcloud.platform.bus import Subscription
from medcloud.platform.uow import UnitOfWork


async def append_audit_entry(
    events: Sequence[AuditRecorded], *, uow: UnitOfWork, settings: Settings
) -> None:
    """Chain audited facts onto the log, in the order they arrived."""
    await service.append_entries(
        uow=uow,
        events=events,
        signer=signer_for(settings),
        checkpoint_every=settings.audit.checkpoint_every,
    )


SUBSCRIPTIONS = (Subscription(AuditRecorded, append_audit_entry, batched=True),)
