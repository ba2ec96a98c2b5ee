"""One MQTT telemetry message: its `msg_id`, its readings stored, and the answer to the device.

What becomes of a message whatever connection it came on; `mqtt.py` takes it from the broker.
"""

from __future__ import annotations

from typing import Any

import orjson

from medcloud.ingest.decode import decode_or_explain
from medcloud.ingest.intake import Intake, Transport
from medcloud.ingest.schemas import IngestResult
from medcloud.platform.contract import RepeatedKey, check_unique_keys
from medcloud.platform.errors import DomainError
from medcloud.platform.security import DevicePrincipal


async def receive_message(
    intake: Intake,
    device: DevicePrincipal,
    payload: bytes,
    *,
    content_type: str | None,
    content_encoding: str | None,
) -> IngestResult:
    """Decode one telemetry message and store its readings once committed.

    Raise Invalid when any of it is refused (what was refused is then kept in quarantine, with
    its reasons), Unavailable when the store cannot take it now.
    """
    settings = intake.settings
    decoded = decode_or_explain(
        payload,
        content_type=content_type,
        content_encoding=content_encoding,
        max_inflated_bytes=settings.ingest.max_decompressed_bytes,
        max_readings=settings.max_batch_readings,
        field="payload",
        fragment=lambda: payload[:4096].decode("utf-8", "replace"),
    )
    return await intake.receive(device, device.device_id, decoded, transport=Transport.MQTT)


def split_msg_id(payload: bytes) -> tuple[bytes, str | None]:
    """Take a top-level `msg_id` out of a JSON payload; return the rest and the id, if any.

    Devices that cannot set MQTT v5 correlation data (MQTT 3.1.1) name their message this way;
    the readings schema allows no extra fields, so it is removed before decoding.
    """
    if b'"msg_id"' not in payload:
        return payload, None
    try:
        document = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return payload, None  # decoding will refuse it, with the reason
    if not isinstance(document, dict) or "msg_id" not in document:
        return payload, None
    msg_id = document.pop("msg_id")
    try:
        check_unique_keys(payload, document | {"msg_id": msg_id})
    except RepeatedKey:
        # Written back out, the payload would lose the repeated key without a word; as it
        # is, decoding refuses it by name.
        return payload, None if msg_id is None else str(msg_id)[:200]
    return orjson.dumps(document), None if msg_id is None else str(msg_id)[:200]


def ack_body(
    msg_id: str | None, result: IngestResult | None, refusal: DomainError | None
) -> dict[str, Any]:
    """Describe to a device what became of one message."""
    if result is not None:
        return {
            "msg_id": msg_id,
            "status": "stored",
            "accepted": result.accepted,
            "stored": result.stored,
            "duplicates": result.duplicates,
        }
    assert refusal is not None  # noqa: S101  (one of the two is given)
    return {
        "msg_id": msg_id,
        "status": "refused",
        "detail": refusal.detail,
        "errors": [{"field": e.field, "message": e.message} for e in refusal.errors],
    }
