"""The HL7 → FHIR function: an HL7 v2 message as a FHIR R4 transaction Bundle.

Two ways in, as the reference design's serverless functions take them:

- a direct invocation, `{"message": "<HL7 v2>", "organisation_id": "…", "identifier_system":
  "…", "time_zone": "Europe/London"}` (time zone optional), answers the Bundle at once and needs
  nothing but the message;
- an S3 ObjectCreated event for objects under `hl7/<interface id>/` converts each with that HL7
  interface's organisation, patient identifier system and time zone, and writes its Bundle to
  `fhir/<interface id>/<the rest of the key>.json` in the same store.

The mapping is the FHIR API's and the MLLP listener's (`interop.conversion`).
"""

from __future__ import annotations

import asyncio
import zoneinfo
from collections.abc import Mapping
from typing import Any

import orjson
import structlog

from medcloud.bootstrap import bootstrap
from medcloud.config import Settings
from medcloud.ingest.upload_files import NotAnUpload, object_key, store_location
from medcloud.interop import fhir, repository
from medcloud.interop.conversion import Converted, Untranslatable, to_fhir
from medcloud.interop.hl7v2 import Unparseable
from medcloud.platform.runtime import Runtime

log = structlog.get_logger(__name__)

MESSAGES = "hl7/"
BUNDLES = "fhir/"
MAX_MESSAGE_BYTES = 16 * 1024 * 1024


class ConversionsFailed(Exception):
    """Some objects of the event met a fault that may pass, and should be retried."""


def convert(event: Mapping[str, Any]) -> dict[str, Any]:
    """Convert the message of a direct invocation; answer its Bundle, or why not."""
    zone = event.get("time_zone")
    try:
        converted = to_fhir(
            str(event["message"]),
            identifier_system=str(event["identifier_system"]),
            organisation_id=str(event["organisation_id"]),
            default_tz=zoneinfo.ZoneInfo(str(zone)) if zone else None,
        )
    except KeyError as exc:
        return {"error": f"the event has no {exc.args[0]!r}"}
    except (Unparseable, Untranslatable, zoneinfo.ZoneInfoNotFoundError) as exc:
        return {"error": str(exc)}
    return _answer(converted)


async def convert_objects(event: Mapping[str, Any], runtime: Runtime) -> dict[str, Any]:
    """Convert every message object the event announces; write each Bundle beside it."""
    bucket, prefix = store_location(runtime.settings)
    summary: dict[str, Any] = {"converted": [], "refused": [], "failed": [], "ignored": 0}
    for record in event.get("Records") or ():
        try:
            key = object_key(record, bucket=bucket, prefix=prefix, under=MESSAGES)
        except NotAnUpload:
            summary["ignored"] += 1
            continue
        try:
            outcome = await _convert_object(key, runtime)
        except Exception as exc:  # noqa: BLE001  (the others are still converted; then retried)
            log.warning("hl7_to_fhir.failed", key=key, error=type(exc).__name__)
            summary["failed"].append(key)
            continue
        summary["converted" if outcome is None else "refused"].append(key)
    return summary


async def _convert_object(key: str, runtime: Runtime) -> str | None:
    """Convert one object; return why it was refused (None: its Bundle is written)."""
    interface_id = key.removeprefix(MESSAGES).split("/", 1)[0]
    async with runtime.read_sessions() as session:
        interface = await repository.interface(session, interface_id)
    if interface is None:
        return "no such HL7 interface"
    raw = await runtime.objects.read_bytes(key, max_bytes=MAX_MESSAGE_BYTES)
    try:
        converted = to_fhir(
            raw,
            identifier_system=interface.identifier_system,
            organisation_id=interface.organisation_id,
            default_tz=zoneinfo.ZoneInfo(interface.time_zone),
        )
    except (Unparseable, Untranslatable) as exc:
        log.info("hl7_to_fhir.refused", key=key, reason=type(exc).__name__)
        return str(exc)
    target = f"{BUNDLES}{key.removeprefix(MESSAGES)}.json"
    await runtime.objects.put_bytes(target, orjson.dumps(_answer(converted)))
    return None


def _answer(converted: Converted) -> dict[str, Any]:
    return {
        "control_id": converted.control_id,
        "message_type": converted.message_type,
        "bundle": fhir.to_json(converted.bundle),
    }


async def _convert_event(event: Mapping[str, Any], settings: Settings) -> dict[str, Any]:
    runtime = bootstrap(settings)
    try:
        return await convert_objects(event, runtime)
    finally:
        await runtime.cache.close()
        await runtime.database.dispose()


def handler(event: Mapping[str, Any], _context: Any) -> dict[str, Any]:
    """Convert a direct invocation's message, or the objects of an S3 ObjectCreated event
    (settings from the environment, as AWS Lambda runs it).

    Raises ConversionsFailed when an object met a fault that may pass, after trying every
    object, so that the event is retried; objects already converted are written again alike.
    """
    if "Records" not in event:
        return convert(event)
    summary = asyncio.run(_convert_event(event, Settings()))
    if summary["failed"]:
        raise ConversionsFailed(f"{len(summary['failed'])} objects failed")
    return summary
