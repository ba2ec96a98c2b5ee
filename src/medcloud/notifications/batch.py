"""What one transaction of escalation reads and queues.

A burst of alarms (a ward's monitors, a relay batch of a hundred) asks the same questions over
and over: the ward's chain, who is on call, their contact details, the organisation's webhooks.
A `Batch` asks each once per transaction and inserts every message it queued in one statement
at the end, so the transaction holds the write connection for a few statements instead of ten
per alarm. Nothing it remembers outlives the transaction.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from types import TracebackType
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from medcloud.notifications import repository
from medcloud.notifications.escalation import Chain
from medcloud.notifications.models import OrganisationSettings, Recipient, Webhook
from medcloud.platform.directory import CareDirectory


class Batch:
    """Roster reads asked once each, and the messages queued, for one transaction.

    Use it as `async with Batch(session) as batch:`; leaving the block without an error inserts
    what was queued (an error leaves it to the transaction's rollback).
    """

    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        self._queued: list[dict[str, Any]] = []
        self._chains: dict[tuple[str, str | None, str], Chain] = {}
        self._on_call: dict[tuple[str, str | None, str], list[str]] = {}
        self._members: dict[tuple[str, str], list[str]] = {}
        self._contacts: dict[str, Recipient | None] = {}
        self._webhooks: dict[str, list[Webhook]] = {}
        self._organisations: dict[str, OrganisationSettings | None] = {}
        self._pages: dict[str, bool] = {}

    async def __aenter__(self) -> Batch:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            await self.flush()

    def queue(self, rows: Sequence[dict[str, Any]]) -> None:
        """Queue deliveries (rows of `outbound.delivery_row`), inserted on `flush`."""
        self._queued.extend(rows)

    async def flush(self) -> None:
        """Insert what was queued; a message whose idempotency key exists is kept as it is."""
        rows, self._queued = self._queued, []
        await repository.add_deliveries(self.session, rows)

    async def chain(self, organisation_id: str, ward_id: str | None, priority: str) -> Chain:
        """The escalation chain for an alarm of `priority` in the ward."""
        key = (organisation_id, ward_id, priority)
        if key not in self._chains:
            self._chains[key] = await repository.chain_for(
                self.session, organisation_id, ward_id, priority
            )
        return self._chains[key]

    async def on_call(
        self, organisation_id: str, ward_id: str | None, duty: str, now: dt.datetime
    ) -> list[str]:
        """The users holding `duty` in the ward; a transaction asks at the instant it first asks."""
        key = (organisation_id, ward_id, duty)
        if key not in self._on_call:
            self._on_call[key] = await repository.on_call(
                self.session, organisation_id, ward_id, duty, now
            )
        return self._on_call[key]

    async def ward_members(
        self, care: CareDirectory, organisation_id: str, ward_id: str
    ) -> list[str]:
        """The ward's care team."""
        key = (organisation_id, ward_id)
        if key not in self._members:
            self._members[key] = list(await care.ward_members(organisation_id, ward_id))
        return self._members[key]

    async def recipients(self, user_ids: Iterable[str]) -> dict[str, Recipient]:
        """The contact details of each of the users that has any."""
        wanted = list(dict.fromkeys(user_ids))
        missing = [user_id for user_id in wanted if user_id not in self._contacts]
        if missing:
            found = await repository.recipients(self.session, missing)
            for user_id in missing:
                self._contacts[user_id] = found.get(user_id)
        return {
            user_id: contact
            for user_id in wanted
            if (contact := self._contacts[user_id]) is not None
        }

    async def webhooks(self, organisation_id: str) -> list[Webhook]:
        """The organisation's webhook endpoints."""
        if organisation_id not in self._webhooks:
            self._webhooks[organisation_id] = await repository.webhooks(
                self.session, organisation_id
            )
        return self._webhooks[organisation_id]

    async def organisation(self, organisation_id: str) -> OrganisationSettings | None:
        """The organisation's fallback contact, if it set one."""
        if organisation_id not in self._organisations:
            self._organisations[organisation_id] = await repository.organisation(
                self.session, organisation_id
            )
        return self._organisations[organisation_id]

    async def pages_anyone(self, organisation_id: str) -> bool:
        """Tell whether the organisation has set up paging: a roster or a fallback contact."""
        if organisation_id not in self._pages:
            self._pages[organisation_id] = await repository.pages_anyone(
                self.session, organisation_id
            )
        return self._pages[organisation_id]
