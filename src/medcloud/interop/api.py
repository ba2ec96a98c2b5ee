"""HTTP routes of the interoperability context: the HL7 interfaces an organisation accepts, and
the FHIR R4 read API (`fhir_api`)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, status

from medcloud.interop import service
from medcloud.interop.fhir_api import router as fhir_router
from medcloud.interop.schemas import InterfaceCreate, InterfaceList, InterfaceRead
from medcloud.platform.http import Authorize, ListDep, UowDep
from medcloud.platform.policy import Action
from medcloud.platform.security import UserPrincipal

router = APIRouter(tags=["interoperability"])
router.include_router(fhir_router)

Manager = Annotated[UserPrincipal, Authorize(Action.INTERFACES_MANAGE)]


@router.post(
    "/api/v1/hl7/interfaces", response_model=InterfaceRead, status_code=status.HTTP_201_CREATED
)
async def create_interface(cmd: InterfaceCreate, uow: UowDep, principal: Manager) -> InterfaceRead:
    """Accept HL7 v2 over MLLP from another system (a monitor gateway, an ADT feed)."""
    return await service.create_interface(uow=uow, principal=principal, cmd=cmd)


@router.get("/api/v1/hl7/interfaces", response_model=InterfaceList)
async def list_interfaces(session: ListDep, principal: Manager) -> InterfaceList:
    """List the systems the organisation accepts HL7 v2 from."""
    return await service.list_interfaces(session=session, principal=principal)
