"""Events the audit context consumes."""

from __future__ import annotations

from medcloud.audit import service
from medcloud.audit.keys import signer_for
from medcloud.config import Settings
from medcloud.platform.audit import AuditRecorded
from medcloud.platform.bus import Subscription
from medcloud.platform.uow import UnitOfWork


async def append_audit_entry(event: AuditRecorded, *, uow: UnitOfWork, settings: Settings) -> None:
    """Chain one audited fact onto the log."""
    await service.append_entry(
        uow=uow,
        event=event,
        signer=signer_for(settings),
        checkpoint_every=settings.audit.checkpoint_every,
    )


SUBSCRIPTIONS = (Subscription(AuditRecorded, append_audit_entry),)
