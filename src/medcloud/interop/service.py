"""Use cases of the interoperability context's configuration: the HL7 interfaces an
organisation accepts messages from. What a message does is in `receiver.py`."""

from __future__ import annotations

import datetime as dt
import uuid

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from medcloud.interop import repository
from medcloud.interop.events import InterfaceCreated
from medcloud.interop.models import Interface
from medcloud.interop.schemas import InterfaceCreate, InterfaceList, InterfaceRead
from medcloud.platform.audit import audit_record
from medcloud.platform.errors import Conflict, FieldError
from medcloud.platform.security import UserPrincipal
from medcloud.platform.uow import UnitOfWork, UnitOfWorkFactory

log = structlog.get_logger(__name__)

DEFAULT_INTERFACE = InterfaceCreate(
    name="Local monitors",
    allowed_addresses=["127.0.0.1/32", "::1/128"],
    identifier_system="urn:medcloud:hl7:local-mrn",
    register_patients=True,
)
"""The embedded deployment's interface: any sender on this machine, registering the patients
its messages name (a demo; a hospital defines its own)."""


async def create_interface(
    *, uow: UnitOfWork, principal: UserPrincipal, cmd: InterfaceCreate
) -> InterfaceRead:
    """Accept HL7 v2 from another system of the principal's organisation."""
    async with uow:
        interface = await _add(uow, principal.organisation_id, cmd)
        uow.publish(
            audit_record(
                principal,
                "hl7.interface.create",
                occurred_at=interface.created_at,
                object_type="hl7_interface",
                object_id=interface.id,
            )
        )
        await uow.commit()
    return InterfaceRead.model_validate(interface)


async def list_interfaces(*, session: AsyncSession, principal: UserPrincipal) -> InterfaceList:
    """Return the organisation's interfaces."""
    found = await repository.interfaces(session, principal.organisation_id)
    return InterfaceList(items=[InterfaceRead.model_validate(i) for i in found])


async def add_default_interface(uow: UnitOfWork, organisation_id: str) -> None:
    """Give a new organisation the embedded deployment's interface (in the caller's
    transaction), unless it has one of that name."""
    if await repository.interface_named(uow.session, organisation_id, DEFAULT_INTERFACE.name):
        return
    await _add(uow, organisation_id, DEFAULT_INTERFACE)
    log.info("hl7.interface.default_created")


async def forget_processed(
    *, uow_factory: UnitOfWorkFactory, now: dt.datetime, keep_days: int
) -> int:
    """Forget the control ids of messages answered more than `keep_days` ago."""
    async with uow_factory() as uow:
        forgotten = await repository.forget_processed(
            uow.session, now - dt.timedelta(days=keep_days)
        )
        await uow.commit()
    return forgotten


async def _add(uow: UnitOfWork, organisation_id: str, cmd: InterfaceCreate) -> Interface:
    if await repository.interface_named(uow.session, organisation_id, cmd.name):
        raise Conflict(
            "an interface of this name exists", errors=[FieldError("name", "already in use")]
        )
    interface = Interface(
        id=str(uuid.uuid4()),
        organisation_id=organisation_id,
        name=cmd.name,
        sending_application=cmd.sending_application,
        sending_facility=cmd.sending_facility,
        allowed_addresses=cmd.allowed_addresses,
        identifier_system=cmd.identifier_system,
        register_patients=cmd.register_patients,
        time_zone=cmd.time_zone,
        created_at=uow.clock.now(),
    )
    uow.session.add(interface)
    uow.publish(
        InterfaceCreated(
            organisation_id=organisation_id, interface_id=interface.id, name=interface.name
        )
    )
    return interface
