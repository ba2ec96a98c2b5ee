"""The HL7 v2 use case: a message in, its acknowledgement out.

A connection belongs to the interface its first message names (MSH-3, MSH-4, and the address
it comes from); every later message must name the same. Then, for each message:

- a control id (MSH-10) answered before is answered the same again, and nothing is redone;
- ORU^R01 (IHE PCD-01): each equipment (OBX-18) is the organisation's device of that serial
  number, registered as discovered when new, and attached to the patient PID-3 names (registered
  from PID when the interface may); the readings go through the ingest context's use case,
  with the same data-quality gate as every transport;
- ADT A01, A04, A08: the patient is registered or updated;
- AA only once everything is durably stored; AE, with an ERR for each refusal, when the message
  was read but not accepted; AR when it could not be read or its sender is not allowed.

A message refused for what it says is refused again if repeated (its answer is kept); one that
failed for a passing reason (a backlogged store, a database away) is not kept, so its resend is
processed afresh. Stored readings are keyed by series and time, so a resend of a message whose
answer was lost stores nothing twice.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
import time
import uuid
import zoneinfo
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from medcloud.interop import adt, hl7v2, pcd01, repository
from medcloud.interop.answers import Answer, Answers
from medcloud.interop.hl7v2 import Fault, Header, Identifier, Message
from medcloud.interop.mllp import Peer
from medcloud.interop.models import Interface
from medcloud.platform.audit import RequestContext, reset_request_context, set_request_context
from medcloud.platform.clock import Clock
from medcloud.platform.directory import (
    DeviceRef,
    EquipmentRegistry,
    Measured,
    PatientDetails,
    PatientRef,
    PatientRegistry,
    ReadingIntake,
)
from medcloud.platform.errors import FieldError, Invalid, Unavailable
from medcloud.platform.memo import Memo
from medcloud.platform.metrics import Metrics
from medcloud.platform.uow import UnitOfWorkFactory

log = structlog.get_logger(__name__)

INTERFACES_FRESH_SECONDS = 5.0
"""How long the interfaces are read from memory: a new one takes effect within this."""
DEVICE_FRESH_SECONDS = 2.0
PATIENT_FRESH_SECONDS = 10.0
TRANSPORT = "mllp"
AckCode = Literal["AA", "AE", "AR"]


@dataclass(frozen=True)
class Sender:
    """An interface as the listener matches connections against it."""

    id: str
    organisation_id: str
    name: str
    application: str | None
    facility: str | None
    networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]
    identifier_system: str
    register_patients: bool
    zone: zoneinfo.ZoneInfo

    @classmethod
    def of(cls, interface: Interface) -> Sender:
        """Take an interface's row."""
        return cls(
            interface.id,
            interface.organisation_id,
            interface.name,
            interface.sending_application,
            interface.sending_facility,
            tuple(ipaddress.ip_network(n) for n in interface.allowed_addresses),
            interface.identifier_system,
            interface.register_patients,
            zoneinfo.ZoneInfo(interface.time_zone),
        )

    @property
    def actor(self) -> str:
        """Who the audit log names for what this interface's messages did."""
        return f"hl7:{self.name}"

    def accepts(self, header: Header, address: str) -> bool:
        """Tell whether a message with this header, from this address, is this interface's."""
        return (
            _names(self.application, header.sending_application)
            and _names(self.facility, header.sending_facility)
            and (not self.networks or any(_address(address) in n for n in self.networks))
        )

    @property
    def specificity(self) -> int:
        """How much it names: the most specific interface that accepts a sender is its own.
        Naming the sending application or facility outweighs an address range, which many
        senders share."""
        named = (self.application is not None) + (self.facility is not None)
        return 2 * named + bool(self.networks)


@dataclass(frozen=True)
class Outcome:
    """What to answer, and what was stored."""

    code: AckCode
    faults: Sequence[Fault] = ()
    stored: int = 0
    keep: bool = True
    """Whether a repeat gets the same answer (False: it failed for a passing reason)."""


class Receiver:
    """Answer HL7 v2 messages; one per process, shared by its connections."""

    def __init__(
        self,
        *,
        uow_factory: UnitOfWorkFactory,
        read_sessions: async_sessionmaker[AsyncSession],
        intake: ReadingIntake,
        equipment: EquipmentRegistry,
        patients: PatientRegistry,
        metrics: Metrics,
        clock: Clock,
    ) -> None:
        self._read_sessions = read_sessions
        self._intake = intake
        self._equipment = equipment
        self._patients_registry = patients
        self.metrics = metrics
        self.clock = clock
        self._senders: list[Sender] = []
        self._senders_read_at: float | None = None
        self.answers = Answers(uow_factory=uow_factory, read_sessions=read_sessions)
        # Every message names its equipment and patient again; the registries are asked once a
        # while. A device attached elsewhere (by an administrator) is seen within seconds, as a
        # device's token is on the other transports.
        self._devices: Memo[tuple[str, str], DeviceRef] = Memo(DEVICE_FRESH_SECONDS)
        self._patients: Memo[tuple[str, str, str], PatientRef | None] = Memo(PATIENT_FRESH_SECONDS)

    def converse(self, peer: Peer) -> Conversation:
        """Start a connection's conversation."""
        return Conversation(self, peer)

    async def sender(self, header: Header, address: str) -> Sender | None:
        """Return the interface a message is from, or None when no interface accepts it."""
        now = time.monotonic()
        if self._senders_read_at is None or now - self._senders_read_at > INTERFACES_FRESH_SECONDS:
            async with self._read_sessions() as session:
                rows = await repository.interfaces(session)
            self._senders = sorted((Sender.of(r) for r in rows), key=lambda s: -s.specificity)
            self._senders_read_at = now
        return next((s for s in self._senders if s.accepts(header, address)), None)

    async def process(self, sender: Sender, header: Header, message: Message) -> Outcome:
        """Do what the message says; return what to answer."""
        try:
            if (header.message_type, header.trigger) == ("ORU", "R01"):
                outcome = await self._observations(sender, header, message)
            elif header.message_type == "ADT":
                outcome = await self._admission(sender, header, message)
            else:
                fault = Fault("MSH", 1, 9, None, "200", "only ORU^R01 and ADT are accepted")
                outcome = Outcome("AR", [fault])
        except Unavailable:
            fault = Fault("MSH", 1, None, None, "207", "the store is catching up; send again")
            outcome = Outcome("AE", [fault], keep=False)
        return outcome

    async def _observations(self, sender: Sender, header: Header, message: Message) -> Outcome:
        oru = pcd01.parse_oru(header, message, default_tz=sender.zone)
        errors = [f for f in oru.faults if f.severity == "E"]
        if errors:
            return Outcome("AE", errors)
        patient = await self._patient(sender, oru.patient, message)
        if isinstance(patient, Fault):
            return Outcome("AE", [patient])
        fallback = header.sending_application.universal_id or None
        by_equipment: dict[str, list[pcd01.Observation]] = defaultdict(list)
        for observation in oru.observations:
            equipment = observation.equipment or fallback
            if equipment is None:
                fault = Fault(
                    "OBX", observation.segment, 18, None, "101", "OBX-18 names no equipment"
                )
                return Outcome("AE", [fault])
            by_equipment[equipment].append(observation)
        stored = 0
        for equipment, observations in by_equipment.items():
            refused = await self._store(sender, equipment, observations, patient)
            if isinstance(refused, list):
                return Outcome("AE", refused, stored)
            stored += refused
        return Outcome("AA", stored=stored)

    async def _store(
        self,
        sender: Sender,
        equipment: str,
        observations: list[pcd01.Observation],
        patient: PatientRef | None,
    ) -> int | list[Fault]:
        """Store one equipment's readings; return how many were new, or why they were not."""
        key = (sender.organisation_id, equipment)

        async def look_up() -> DeviceRef:
            found, _ = await self._equipment.equipment(*key, actor=sender.actor)
            return found

        device, _ = await self._devices.get(key, look_up)
        if device.decommissioned:
            out_of_service = "this equipment is out of service"
            return [Fault("OBX", observations[0].segment, 18, None, "207", out_of_service)]
        if patient is not None and device.patient_id != patient.id:
            since = min(o.at for o in observations)
            device = await self._equipment.attach(
                device, patient.id, since=since, actor=sender.actor
            )
            self._devices.put(key, device)
        instants: dict[dt.datetime, dict[str, pcd01.Observation]] = defaultdict(dict)
        for observation in observations:
            instants[observation.at][observation.type] = observation
        batch = list(instants.values())
        readings = [
            Measured(next(iter(at.values())).at, {t: o.value for t, o in at.items()})
            for at in batch
        ]
        try:
            return await self._intake.vouched(device, readings, transport=TRANSPORT)
        except Invalid as refusal:
            return [_located(error, batch) for error in refusal.errors]

    async def _patient(
        self, sender: Sender, identifiers: Sequence[Identifier], message: Message
    ) -> PatientRef | Fault | None:
        """Return whom the readings are of (None: whoever their device is attached to)."""
        identifier = adt.preferred(identifiers)
        if identifier is None:
            return None
        key = (sender.organisation_id, sender.identifier_system, identifier.value)
        found, _ = await self._patients.get(key, lambda: self._patients_registry.find(*key))
        if found is not None:
            return found
        if not sender.register_patients:
            return Fault("PID", 1, 3, None, "204", "no patient has this identifier")
        recorded = await self._record(sender, adt.read_patient(message), identifier)
        if isinstance(recorded, Fault):
            return recorded
        self._patients.put(key, recorded[0])
        return recorded[0]

    async def _admission(self, sender: Sender, header: Header, message: Message) -> Outcome:
        admission = adt.parse_adt(header, message)
        errors = [f for f in admission.faults if f.severity == "E"]
        if errors:
            return Outcome("AR" if errors[0].code in ("200", "201") else "AE", errors)
        identifier = adt.preferred(admission.identifiers)
        assert identifier is not None  # noqa: S101  (its absence is a fault above)
        recorded = await self._record(sender, admission, identifier)
        if isinstance(recorded, Fault):
            return Outcome("AE", [recorded])
        key = (sender.organisation_id, sender.identifier_system, identifier.value)
        self._patients.put(key, recorded[0])
        return Outcome("AA")

    async def _record(
        self, sender: Sender, admission: adt.Admission, identifier: Identifier
    ) -> tuple[PatientRef, bool] | Fault:
        details = PatientDetails(
            identifier_system=sender.identifier_system,
            identifier_value=identifier.value,
            family_name=admission.family_name,
            given_name=admission.given_name,
            birth_date=admission.birth_date,
            ward=admission.ward,
        )
        try:
            return await self._patients_registry.record(
                sender.organisation_id, details, actor=sender.actor
            )
        except Invalid as refusal:
            missing = refusal.errors[0].field if refusal.errors else "family_name"
            field, component = _PID_FIELDS.get(missing, (5, None))
            return Fault("PID", 1, field, component, "101", f"PID-{field} is needed to register")


class Conversation:
    """One connection's messages, answered in turn."""

    def __init__(self, receiver: Receiver, peer: Peer) -> None:
        self._receiver = receiver
        self._peer = peer
        self._sender: Sender | None = None

    async def answer(self, message: bytes) -> bytes:
        """Return the acknowledgement of one message."""
        receiver = self._receiver
        try:
            header, parsed = hl7v2.parse(message)
        except hl7v2.Unparseable as exc:
            receiver.metrics.hl7_messages.labels("unreadable", "AR").inc()
            return self._ack(None, "AR", [], text=exc.reason, inbound=exc.control_id)
        sender = await receiver.sender(header, self._peer.address)
        if sender is None or (self._sender is not None and sender.id != self._sender.id):
            log.warning("hl7.sender_refused", address=self._peer.address)
            fault = Fault("MSH", 1, 3, None, "207", "this sender is not accepted here")
            return self._ack(header, "AR", [fault])
        self._sender = sender
        context = set_request_context(
            RequestContext(request_id=f"hl7:{header.control_id}"[:64], source_ip=self._peer.address)
        )
        try:
            before = await receiver.answers.given(sender.id, header.control_id)
            if before is not None:
                receiver.metrics.hl7_messages.labels("repeat", before.code).inc()
                return before.ack.encode()
            outcome = await receiver.process(sender, header, parsed)
        except Exception as exc:  # noqa: BLE001  (a sender must hear that it should resend)
            log.error("hl7.message_failed", error=type(exc).__name__)
            fault = Fault("MSH", 1, None, None, "207", "the message could not be processed now")
            outcome = Outcome("AE", [fault], keep=False)
        finally:
            reset_request_context(context)
        kind = f"{header.message_type}^{header.trigger}"
        receiver.metrics.hl7_messages.labels(kind, outcome.code).inc()
        answer = self._ack(header, outcome.code, outcome.faults)
        if outcome.keep:
            receiver.answers.keep(
                Answer(
                    sender.id,
                    header.control_id,
                    kind,
                    outcome.code,
                    answer.decode(),
                    receiver.clock.now(),
                )
            )
        return answer

    def too_large(self, beginning: bytes) -> bytes:
        """Return the rejection of a message too large to read, from its first bytes."""
        header = None
        msh = beginning.split(b"\r", 1)[0].split(b"\n", 1)[0]
        try:
            header, _ = hl7v2.parse(msh)
        except hl7v2.Unparseable:
            pass
        self._receiver.metrics.hl7_messages.labels("too_large", "AR").inc()
        return self._ack(header, "AR", [], text="the message is larger than this listener takes")

    def _ack(
        self,
        header: Header | None,
        code: AckCode,
        faults: Sequence[Fault],
        *,
        text: str | None = None,
        inbound: str | None = None,
    ) -> bytes:
        return hl7v2.ack(
            header,
            code,
            now=self._receiver.clock.now(),
            control_id=uuid.uuid4().hex[:20],
            faults=faults,
            text=text,
            inbound_control_id=inbound,
        ).encode()


_PID_FIELDS = {"family_name": (5, 1), "given_name": (5, 2), "birth_date": (7, None)}
_GATE_FIELD = re.compile(r"readings\.(\d+)\.(?:measurements\.(\w+)|timestamp)")


def _located(error: FieldError, batch: Sequence[dict[str, pcd01.Observation]]) -> Fault:
    """Name the OBX a refusal of the gate is about (its value, OBX-5, or its time, OBX-14)."""
    found = _GATE_FIELD.fullmatch(error.field)
    if found is None or int(found[1]) >= len(batch):
        return Fault("OBX", 1, 5, None, "207", error.message)
    at = batch[int(found[1])]
    observation = at.get(found[2] or "") or next(iter(at.values()))
    field = 5 if found[2] else 14
    return Fault("OBX", observation.segment, field, None, "207", error.message)


def _names(wanted: str | None, designator: hl7v2.Designator) -> bool:
    return wanted is None or wanted in (designator.namespace, designator.universal_id)


def _address(address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    try:
        found = ipaddress.ip_address(address)
    except ValueError:
        return ipaddress.ip_address("0.0.0.0")  # noqa: S104  (matches no allow-list entry)
    if isinstance(found, ipaddress.IPv6Address) and found.ipv4_mapped is not None:
        return found.ipv4_mapped
    return found
