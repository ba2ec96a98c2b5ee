"""The HL7 v2 envelope: read a message's header and segments, and answer it with an ACK.

python-hl7 splits a message into segments, fields, repetitions and components; this module wraps
its untyped containers so that callers read values by HL7 position, already unescaped, and never
meet a raw separator. Values echoed into an ACK are escaped, so no text from a sender can open a
field or a segment in our answer.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from typing import Any, Literal

import hl7

AckCode = Literal["AA", "AE", "AR"]

# HL7 table 0357, message error condition codes, as ERR-3 names them.
ERROR_NAMES = {
    "0": "Message accepted",
    "100": "Segment sequence error",
    "101": "Required field missing",
    "102": "Data type error",
    "103": "Table value not found",
    "104": "Value too long",
    "200": "Unsupported message type",
    "201": "Unsupported event code",
    "202": "Unsupported processing id",
    "203": "Unsupported version id",
    "204": "Unknown key identifier",
    "205": "Duplicate key identifier",
    "206": "Application record locked",
    "207": "Application internal error",
}

# PCD-01 is profiled on v2.6; an ACK to a message whose version we could not read says so.
_DEFAULT_VERSION = "2.6"
_SEGMENT_NAME = re.compile(r"[A-Z][A-Z0-9]{2}")
_DTM = re.compile(
    r"(\d{4})(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\d{2})?(?:\.(\d{1,6}))?(?:([+-])(\d{2})(\d{2}))?"
)
_HEX = re.compile(r"X((?:[0-9A-Fa-f]{2})+)")
# Formatting commands of the FT type (v2.6 section 2.7.6): a line break stays a line break,
# indentation and fill modes carry no text.
_FORMATTING = {".br": "\n", ".sp": "\n", ".ce": "\n", ".fi": "", ".nf": "", ".in": "", ".ti": ""}
_FORMATTING_ARGUMENT = re.compile(r"(\.(?:sp|sk|in|ti))[+-]?\d{0,3}")


class Unparseable(Exception):
    """Not an HL7 v2 message we can read: answer AR, with MSA-2 set to `control_id` if known."""

    def __init__(self, reason: str, control_id: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.control_id = control_id


@dataclass(frozen=True)
class Designator:
    """An HD (MSH-3 to MSH-6): namespace id, universal id (an EUI-64, an OID) and its type."""

    namespace: str
    universal_id: str = ""
    universal_id_type: str = ""


@dataclass(frozen=True)
class Header:
    """What MSH says about a message."""

    control_id: str
    message_type: str
    trigger: str
    structure: str | None
    sending_application: Designator
    sending_facility: Designator
    receiving_application: Designator
    receiving_facility: Designator
    sent_at: datetime | None
    """MSH-7 in UTC; None when absent or unreadable."""
    processing_id: str
    version: str
    field_separator: str
    encoding_characters: str


@dataclass(frozen=True)
class Fault:
    """Why part of a message is refused, located the way ERR-2 locates it."""

    segment: str
    sequence: int
    """1-based position of the segment among the segments of its kind."""
    field: int | None
    """None when the whole segment is missing."""
    component: int | None
    code: str
    """HL7 table 0357: 100 segment missing, 101 required field missing, 102 data type error,
    103 table value not found, 200/201 unsupported message type/event, 207 internal error."""
    text: str
    severity: Literal["E", "W"] = "E"


@dataclass(frozen=True)
class Identifier:
    """One patient identifier (a CX of PID-3)."""

    value: str
    authority: str | None
    type_code: str | None


class Segment:
    """One segment of a parsed message: values by HL7 position, unescaped."""

    __slots__ = ("_message", "_raw", "name", "sequence")

    def __init__(self, raw: Any, message: Message, name: str, sequence: int) -> None:
        self._raw = raw
        self._message = message
        self.name = name
        self.sequence = sequence

    def raw(
        self, field: int, component: int = 1, subcomponent: int = 1, *, repetition: int = 1
    ) -> str:
        """Return one value as sent, escape sequences and all; empty when absent."""
        node: Any = self._raw[field] if 0 <= field < len(self._raw) else ""
        for index in (repetition, component, subcomponent):
            if isinstance(node, str):
                node = node if index == 1 else ""
            else:
                node = node[index - 1] if index <= len(node) else ""
        while not isinstance(node, str):
            node = node[0] if len(node) else ""
        return node

    def is_empty(self, field: int) -> bool:
        """Tell whether a field holds nothing but separators and blanks."""
        node: Any = self._raw[field] if 0 <= field < len(self._raw) else ""
        return not str(node).strip(self._message.separators + " ")

    def value(
        self, field: int, component: int = 1, subcomponent: int = 1, *, repetition: int = 1
    ) -> str:
        """Return one value with its escape sequences decoded; empty when absent."""
        raw = self.raw(field, component, subcomponent, repetition=repetition)
        if self.name == "MSH" and field in (1, 2):
            return raw
        return self._message.unescape(raw)

    def components(self, field: int, *, repetition: int = 1) -> int:
        """Count the components of one repetition of a field."""
        node: Any = self._raw[field] if 0 <= field < len(self._raw) else ""
        if isinstance(node, str) or not len(node) or repetition > len(node):
            return 1
        node = node[repetition - 1]
        return 1 if isinstance(node, str) else len(node)

    def repetitions(self, field: int) -> int:
        """Count the repetitions of a field (1 for an empty one)."""
        node: Any = self._raw[field] if 0 <= field < len(self._raw) else ""
        return 1 if isinstance(node, str) else max(1, len(node))


class Message:
    """A parsed message: its segments in order, each knowing its position among its kind."""

    def __init__(self, raw: Any) -> None:
        self._raw = raw
        self._escape = str(raw.esc)
        self.separators = str(raw.separators)
        counts: dict[str, int] = {}
        self.segments: list[Segment] = []
        for segment in raw:
            name = str(segment[0])
            counts[name] = counts.get(name, 0) + 1
            self.segments.append(Segment(segment, self, name, counts[name]))

    def all(self, name: str) -> list[Segment]:
        """Return every segment called `name`, in order."""
        return [s for s in self.segments if s.name == name]

    def first(self, name: str) -> Segment | None:
        """Return the first segment called `name`, if any."""
        return next((s for s in self.segments if s.name == name), None)

    def unescape(self, text: str) -> str:
        """Decode escape sequences into the literal characters they stand for."""
        esc = self._escape
        if esc not in text:
            return text
        out: list[str] = []
        rest = text
        while esc in rest:
            before, _, after = rest.partition(esc)
            out.append(before)
            body, closed, rest = after.partition(esc)
            if closed:
                out.append(self._decode(body))
        # A lone escape character without its closing one introduces nothing: it is dropped.
        out.append(rest)
        return "".join(out)

    def _decode(self, body: str) -> str:
        if body in ("F", "S", "T", "R", "E"):
            return str(self._raw.unescape(f"{self._escape}{body}{self._escape}"))
        hexadecimal = _HEX.fullmatch(body)
        if hexadecimal:
            data = bytes.fromhex(hexadecimal[1])
            try:
                return data.decode("utf-8")
            except UnicodeDecodeError:
                return data.decode("latin-1")
        if body in _FORMATTING:
            return _FORMATTING[body]
        argument = _FORMATTING_ARGUMENT.fullmatch(body)
        if argument:
            return "\n" if argument[1] == ".sp" else ""
        # Highlighting (H, N), character-set switches (C, M) and local escapes (Z) change how
        # text looks or is encoded, never what it says; an unknown sequence is ignored (2.7.7).
        return ""


def parse(raw: str | bytes, *, default_tz: tzinfo | None = None) -> tuple[Header, Message]:
    """Read a message's header and segments; raise Unparseable when it is not HL7 v2."""
    text = _decode_bytes(raw) if isinstance(raw, bytes) else raw
    # MLLP framing, and the \n or \r\n that sloppy senders end segments with.
    text = text.strip("\x0b\x1c\r\n\t ").replace("\r\n", "\r").replace("\n", "\r")
    lines = [line for line in text.split("\r") if line.strip()]
    if not lines or not lines[0].startswith("MSH") or len(lines[0]) < 8:
        raise Unparseable("the message does not start with an MSH segment")
    control_id = _control_id(lines[0])
    separator, encoding = _separators(lines[0], control_id)
    for number, line in enumerate(lines, start=1):
        if not _SEGMENT_NAME.fullmatch(line[:3]) or line[3:4] not in ("", separator):
            raise Unparseable(f"segment {number} has no valid segment name", control_id)
    try:
        parsed = hl7.parse("\r".join(lines))
    except (hl7.ParseException, ValueError, IndexError, KeyError, AssertionError) as exc:
        raise Unparseable("the segments cannot be split", control_id) from exc
    message = Message(parsed)
    msh = message.segments[0]
    if not control_id:
        raise Unparseable("MSH-10 message control id is missing")
    if not msh.value(9, 1) or not msh.value(12, 1):
        raise Unparseable("MSH-9 message type or MSH-12 version is missing", control_id)
    try:
        sent_at: datetime | None = parse_time(msh.value(7, 1), default_tz)
    except ValueError:
        sent_at = None
    header = Header(
        control_id=msh.value(10),
        message_type=msh.value(9, 1),
        trigger=msh.value(9, 2),
        structure=msh.value(9, 3) or None,
        sending_application=_designator(msh, 3),
        sending_facility=_designator(msh, 4),
        receiving_application=_designator(msh, 5),
        receiving_facility=_designator(msh, 6),
        sent_at=sent_at,
        processing_id=msh.value(11, 1),
        version=msh.value(12, 1),
        field_separator=separator,
        encoding_characters=encoding,
    )
    return header, message


def parse_time(text: str, default_tz: tzinfo | None = None) -> datetime:
    """Read an HL7 DTM as an aware UTC datetime; a time without offset is in `default_tz`."""
    match = _DTM.fullmatch(text.strip())
    if not match:
        raise ValueError("not an HL7 date/time")
    year, month, day, hour, minute, second, fraction, sign, zone_h, zone_m = match.groups()
    if fraction and not second:
        raise ValueError("fractional seconds without seconds")
    zone = default_tz or UTC
    if sign:
        if int(zone_h) > 23 or int(zone_m) > 59:
            raise ValueError("time zone offset out of range")
        offset = timedelta(hours=int(zone_h), minutes=int(zone_m))
        zone = timezone(-offset if sign == "-" else offset)
    value = datetime(
        int(year),
        int(month or 1),
        int(day or 1),
        int(hour or 0),
        int(minute or 0),
        int(second or 0),
        int((fraction or "0").ljust(6, "0")),
        tzinfo=zone,
    )
    return value.astimezone(UTC)


def identifiers(segment: Segment, field: int = 3) -> list[Identifier]:
    """Read a list of CX (PID-3): one identifier per repetition that has an id."""
    found = []
    for repetition in range(1, segment.repetitions(field) + 1):
        value = segment.value(field, 1, repetition=repetition).strip()
        if not value:
            continue
        authority = segment.value(field, 4, 1, repetition=repetition) or segment.value(
            field, 4, 2, repetition=repetition
        )
        type_code = segment.value(field, 5, repetition=repetition)
        found.append(Identifier(value, authority or None, type_code or None))
    return found


def escape(text: str) -> str:
    """Escape a value for a message written with the standard encoding characters |^~\\&."""
    # python-hl7's escape writes control characters as `\X a\` (space-padded, not hex) and code
    # points above 0xFF as one run of digits; ACK text must survive any receiver's parser.
    out = []
    for char in text:
        if char in _ESCAPES:
            out.append(_ESCAPES[char])
        elif char < " " or char == "\x7f":
            out.append(" ")
        elif char > "\x7e":
            out.append(f"\\X{char.encode('utf-8').hex().upper()}\\")
        else:
            out.append(char)
    return "".join(out)


_ESCAPES = {"|": "\\F\\", "^": "\\S\\", "&": "\\T\\", "~": "\\R\\", "\\": "\\E\\"}


def ack(
    header: Header | None,
    code: AckCode,
    *,
    now: datetime,
    control_id: str,
    faults: Sequence[Fault] = (),
    text: str | None = None,
    inbound_control_id: str | None = None,
    application: str = "MEDCLOUD",
    facility: str = "MEDCLOUD",
) -> str:
    """Build an original-mode ACK: MSH, MSA and one ERR per fault, each ended by \\r."""
    if now.tzinfo is None:
        raise ValueError("now must be an aware datetime")
    trigger = escape(header.trigger) if header else ""
    msh = "|".join(
        [
            "MSH|^~\\&",
            escape(application),
            escape(facility),
            _hd(header.sending_application) if header else "",
            _hd(header.sending_facility) if header else "",
            now.astimezone(UTC).strftime("%Y%m%d%H%M%S+0000"),
            "",
            f"ACK^{trigger}^ACK" if trigger else "ACK",
            escape(control_id),
            escape(header.processing_id) if header and header.processing_id else "P",
            escape(header.version) if header else _DEFAULT_VERSION,
        ]
    )
    inbound = header.control_id if header else inbound_control_id or ""
    # MSA-3 is an ST of 80 characters: the caller's text, else what the first fault says.
    if text is None:
        text = faults[0].text if faults and code != "AA" else ""
    msa = f"MSA|{code}|{escape(inbound)}"
    if text:
        msa += f"|{escape(text[:80])}"
    lines = [msh, msa, *(_err(fault) for fault in faults)]
    return "\r".join(lines) + "\r"


def _err(fault: Fault) -> str:
    location = [escape(fault.segment), str(fault.sequence)]
    if fault.field is not None:
        location.append(str(fault.field))
        if fault.component is not None:
            location += ["1", str(fault.component)]
    name = ERROR_NAMES.get(fault.code, "")
    return "|".join(
        [
            "ERR",
            "",
            "^".join(location),
            f"{escape(fault.code)}^{escape(name)}^HL70357",
            fault.severity,
            "",
            "",
            "",
            escape(fault.text),
        ]
    )


def _hd(designator: Designator) -> str:
    parts = [designator.namespace, designator.universal_id, designator.universal_id_type]
    return "^".join(escape(p) for p in parts).rstrip("^")


def _designator(msh: Segment, field: int) -> Designator:
    return Designator(msh.value(field, 1), msh.value(field, 2), msh.value(field, 3))


def _separators(msh: str, control_id: str | None) -> tuple[str, str]:
    separator = msh[3]
    end = msh.find(separator, 4)
    encoding = msh[4:end] if end != -1 else msh[4:]
    # MSH-2 holds component, repetition, escape and sub-component characters (and, from v2.7,
    # truncation): all distinct, none a letter, digit or blank that data could contain.
    characters = separator + encoding
    if (
        len(encoding) not in (4, 5)
        or len(set(characters)) != len(characters)
        or any(c.isalnum() or c.isspace() for c in characters)
    ):
        raise Unparseable("MSH-1 and MSH-2 are not valid encoding characters", control_id)
    return separator, encoding


def _control_id(msh: str) -> str | None:
    """Recover MSH-10 from a header that may not be valid, for the MSA-2 of a reject."""
    fields = msh.split(msh[3])
    if len(fields) <= 9:
        return None
    component = fields[1][:1] or "^"
    value = fields[9].split(component)[0].strip()
    return value or None


def _decode_bytes(raw: bytes) -> str:
    # MSH-18 names the character set; PCD-01 senders declare UNICODE UTF-8, older ones 8859/1.
    line = raw.lstrip(b"\x0b\r\n\t ").split(b"\r", 1)[0].split(b"\n", 1)[0]
    first = line.decode("ascii", errors="replace")
    fields = first.split(first[3]) if len(first) > 3 else []
    charset = fields[17].strip() if len(fields) > 17 else ""
    if charset.startswith("8859/1"):
        return raw.decode("latin-1")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Unparseable("the message is not valid UTF-8") from exc
