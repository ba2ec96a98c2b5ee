"""What the notifications context keeps per process: the key of its acknowledge links and the
signals that wake its loops and live streams the moment there is work, instead of on a poll."""

from __future__ import annotations

import asyncio
import contextlib

from medcloud.config import Settings
from medcloud.platform.datadir import link_secret


class Notifier:
    """Wake-up signals and the link key, shared by the loops, handlers and routes of a process."""

    def __init__(self, link_key: bytes) -> None:
        self.link_key = link_key
        self._deliveries = asyncio.Event()
        self._escalations = asyncio.Event()
        self._feed = asyncio.Event()

    def deliveries_due(self) -> None:
        """Tell the delivery loop that messages were queued (called after their commit)."""
        self._deliveries.set()

    def escalations_due(self) -> None:
        """Tell the escalation loop to look again (a new alarm may be due sooner)."""
        self._escalations.set()

    async def wait_deliveries(self, timeout: float, stop: asyncio.Event) -> None:
        """Wait until messages are queued, `stop` is set or `timeout` passes."""
        await _wait(self._deliveries, timeout, stop)

    async def wait_escalations(self, timeout: float, stop: asyncio.Event) -> None:
        """Wait until the escalation loop is woken, `stop` is set or `timeout` passes."""
        await _wait(self._escalations, timeout, stop)

    def feed_grew(self) -> None:
        """Wake this process's live streams (a stream also polls for other processes' writes)."""
        # One event per growth, replaced as it is set: every stream waiting now wakes, and a
        # stream that waits later waits for the next growth. (A Condition under wait_for could
        # fail to re-acquire its lock when a timeout and a notify met, ending the stream.)
        grew, self._feed = self._feed, asyncio.Event()
        grew.set()

    async def wait_feed(self, timeout: float) -> None:
        """Wait until the feed grows in this process or `timeout` passes."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._feed.wait(), timeout)


async def _wait(event: asyncio.Event, timeout: float, stop: asyncio.Event) -> None:
    # Waiting on `stop` too lets a stopping process end its loops at once, not a poll later.
    waits = {asyncio.ensure_future(event.wait()), asyncio.ensure_future(stop.wait())}
    _, pending = await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    for waiting in pending:
        waiting.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    if event.is_set():
        event.clear()


def link_key(settings: Settings) -> bytes:
    """The key that signs acknowledge links (`MEDCLOUD_NOTIFICATIONS__LINK_SECRET`): a link
    mailed by a worker is opened by an API process."""
    return link_secret(
        settings.notifications.link_secret, settings.var_dir, "notification-links.key"
    )
