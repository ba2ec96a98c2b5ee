"""What the interoperability context's API reads and answers."""

from __future__ import annotations

import datetime as dt
import ipaddress
import zoneinfo
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StrictBool, field_validator

from medcloud.platform.types import TRIM, Name, line, trimmed

Text = Annotated[str, trimmed(1, 180), TRIM]


class InterfaceCreate(BaseModel):
    """A hospital system to accept HL7 v2 from."""

    model_config = ConfigDict(extra="forbid")

    name: Name
    sending_application: Text | None = None
    """MSH-3 its messages carry (its namespace id); None: any."""
    sending_facility: Text | None = None
    """MSH-4 its messages carry; None: any."""
    allowed_addresses: list[Annotated[str, Field(min_length=1, max_length=50)]] = Field(
        default_factory=list, max_length=64
    )
    """Addresses or networks (CIDR) it may connect from; empty: any."""
    identifier_system: Annotated[str, line(1, 200)]
    """The system its patient identifiers (PID-3) belong to, e.g. the hospital's MRN URI."""
    register_patients: StrictBool = False
    """Register a patient medcloud does not know when an observation names them."""
    time_zone: Annotated[str, Field(min_length=1, max_length=64)] = "UTC"
    """The zone of its timestamps that carry no offset (an IANA name)."""

    @field_validator("allowed_addresses")
    @classmethod
    def networks(cls, value: list[str]) -> list[str]:
        """Keep each as its canonical network."""
        return [str(ipaddress.ip_network(item.strip(), strict=False)) for item in value]

    @field_validator("time_zone")
    @classmethod
    def zone(cls, value: str) -> str:
        """Refuse a zone the zone database does not know."""
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError("not a known time zone") from exc
        return value


class InterfaceRead(BaseModel):
    """An interface as configured."""

    model_config = ConfigDict(from_attributes=True)

    id: str
    name: str
    sending_application: str | None
    sending_facility: str | None
    allowed_addresses: list[str]
    identifier_system: str
    register_patients: bool
    time_zone: str
    created_at: dt.datetime


class InterfaceList(BaseModel):
    """The organisation's interfaces."""

    items: list[InterfaceRead]
