"""Events the interoperability context publishes."""

from __future__ import annotations

from medcloud.platform.events import Event


class InterfaceCreated(Event):
    """A hospital system may now send HL7 v2 to the organisation."""

    routing_key = "hl7.interface.created"

    interface_id: str
    name: str
