"""The notifications context's start hook and long-running loops."""

from __future__ import annotations

import asyncio
import datetime as dt

import structlog
from sqlalchemy import delete

from medcloud.config import Settings
from medcloud.notifications import steps
from medcloud.notifications.delivery import deliver_loop
from medcloud.notifications.mailbox import LocalMailbox
from medcloud.notifications.models import FeedEntry
from medcloud.notifications.notifier import Notifier, link_key
from medcloud.platform.clock import Clock
from medcloud.platform.directory import CareDirectory
from medcloud.platform.metrics import Metrics
from medcloud.platform.uow import UnitOfWorkFactory

log = structlog.get_logger(__name__)

PRUNE_EVERY = dt.timedelta(hours=1)


async def provide_notifier(*, settings: Settings) -> Notifier:
    """Give handlers, loops and routes of this process their shared `notifier`."""
    return Notifier(link_key(settings))


async def escalate(
    *,
    uow_factory: UnitOfWorkFactory,
    settings: Settings,
    care: CareDirectory,
    metrics: Metrics,
    clock: Clock,
    stop: asyncio.Event,
    notifier: Notifier,
) -> None:
    """Run due escalation steps until `stop`; prune the live feed now and then."""
    config = settings.notifications
    pruned_at: dt.datetime | None = None
    while not stop.is_set():
        async with uow_factory() as uow:
            ran = await steps.escalate_due(uow, settings=settings, care=care, metrics=metrics)
            await uow.commit()
        if ran:
            notifier.deliveries_due()
            continue
        now = clock.now()
        if pruned_at is None or now - pruned_at > PRUNE_EVERY:
            pruned_at = now
            async with uow_factory() as uow:
                cutoff = now - dt.timedelta(days=config.stream_keep_days)
                await uow.session.execute(delete(FeedEntry).where(FeedEntry.created_at < cutoff))
                await uow.commit()
        await notifier.wait_escalations(config.poll_seconds, stop)


async def deliver(
    *,
    uow_factory: UnitOfWorkFactory,
    settings: Settings,
    metrics: Metrics,
    stop: asyncio.Event,
    notifier: Notifier,
) -> None:
    """Send queued messages until `stop`."""
    await deliver_loop(
        uow_factory=uow_factory,
        settings=settings,
        metrics=metrics,
        stop=stop,
        notifier=notifier,
    )


async def demo_mailbox(*, settings: Settings, stop: asyncio.Event) -> None:
    """With `demo_mailbox_port` set, keep a local SMTP mailbox (a Maildir in `var_dir`) open,
    so the demo's alarms arrive as email a newcomer can open, with no account anywhere."""
    port = settings.notifications.demo_mailbox_port
    if not port or settings.notifications.smtp_host:
        await stop.wait()  # nothing to run; returning would have the loop restarted at once
        return
    mailbox = LocalMailbox(port=port, directory=settings.var_dir / "mailbox")
    await mailbox.start()
    log.info("notification.demo_mailbox", port=mailbox.port)
    try:
        await stop.wait()
    finally:
        await mailbox.stop()
