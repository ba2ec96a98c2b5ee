"""Events the interoperability context consumes: a deployment's first organisation."""

from __future__ import annotations

from medcloud.config import Settings
from medcloud.identity.events import OrganisationCreated
from medcloud.interop import service
from medcloud.platform.bus import Subscription
from medcloud.platform.uow import UnitOfWork


async def organisation_created(
    event: OrganisationCreated, *, uow: UnitOfWork, settings: Settings
) -> None:
    """Give the deployment's first organisation the local interface, where settings ask."""
    if event.bootstrap and settings.mllp.default_interface:
        await service.add_default_interface(uow, event.organisation_id)


SUBSCRIPTIONS = (Subscription(OrganisationCreated, organisation_created),)
