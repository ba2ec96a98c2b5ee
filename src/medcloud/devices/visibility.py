"""Which devices a principal may see: clinical staff only those of the patients in their care."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from medcloud.devices import repository
from medcloud.devices.models import Device
from medcloud.platform.directory import CareDirectory
from medcloud.platform.errors import NotFound, OutOfScope
from medcloud.platform.security import Role, UserPrincipal


async def visible_patients(care: CareDirectory, principal: UserPrincipal) -> frozenset[str] | None:
    """Return the patients whose devices a clinician or nurse may see; None: every device.

    Admins and technicians look after every device of the organisation; clinical staff see
    only the devices of the patients in their care, since a device names its patient.
    """
    if principal.role not in (Role.CLINICIAN, Role.NURSE):
        return None
    scope = await care.scope(principal.user_id, principal.organisation_id, principal.role.value)
    return scope.patient_ids


async def visible_device(
    session: AsyncSession, care: CareDirectory, principal: UserPrincipal, device_id: str
) -> Device:
    """Return a device of the principal's organisation, within a clinician's care scope."""
    device = await repository.get_in_organisation(session, principal.organisation_id, device_id)
    if device is None:
        raise NotFound("device not found")
    visible = await visible_patients(care, principal)
    if visible is not None and device.patient_id not in visible:
        raise OutOfScope("device not found")
    return device
