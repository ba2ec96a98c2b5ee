"""Firmware rules with no I/O: versions, the signed manifest, signatures, waves, windows.

What a manufacturer signs is `signed_message(...)`: a fixed prefix and the canonical JSON (sorted
keys, no spaces) of the image's SHA-256 and its manifest — model, version, minimum version that
may install it, and expiry (UTC, whole seconds, `Z`). Signing the digest with the manifest binds
them: neither bytes nor terms can be swapped for another image's.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import math
import re
from dataclasses import dataclass
from enum import StrEnum

import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

VERSION_PATTERN = r"^\d{1,6}(\.\d{1,6}){0,3}$"
SIGNATURE_PREFIX = b"medcloud-firmware-v1\n"
# A file name is a label, never a path: no separators, no leading dot, printable ASCII.
_FILE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,199}$")


def parse_version(version: str) -> tuple[int, ...]:
    """Return a comparable form of a dotted numeric version ("2.10" > "2.9"); ValueError else."""
    if not re.match(VERSION_PATTERN, version):
        raise ValueError(f"not a dotted numeric version: {version!r}")
    parts = [int(part) for part in version.split(".")]
    return tuple(parts + [0] * (4 - len(parts)))


def is_newer(candidate: str, than: str) -> bool:
    """Tell whether `candidate` is a strictly later version than `than`."""
    return parse_version(candidate) > parse_version(than)


def manifest_timestamp(moment: dt.datetime) -> str:
    """Format an expiry the one way the signed manifest spells it."""
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def canonical_manifest(
    *, model: str, version: str, min_version: str | None, expires_at: dt.datetime
) -> dict[str, str | None]:
    """Return the manifest as it is signed and served."""
    return {
        "model": model,
        "version": version,
        "min_version": min_version,
        "expires_at": manifest_timestamp(expires_at),
    }


def signed_message(sha256: str, manifest: dict[str, str | None]) -> bytes:
    """Return the bytes a manufacturer signs for an image with this digest and manifest."""
    body = orjson.dumps({**manifest, "sha256": sha256.lower()}, option=orjson.OPT_SORT_KEYS)
    return SIGNATURE_PREFIX + body


def load_public_key(pem: str) -> Ed25519PublicKey:
    """Parse a PEM Ed25519 public key; ValueError for anything else."""
    try:
        key = serialization.load_pem_public_key(pem.encode())
    except (ValueError, TypeError) as exc:
        raise ValueError("not a PEM public key") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError("not an Ed25519 key")
    return key


def decode_signature(signature: str) -> bytes:
    """Return the raw 64-byte signature from base64; ValueError for anything else."""
    try:
        raw = base64.b64decode(signature, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("not base64") from exc
    if len(raw) != 64:
        raise ValueError("an Ed25519 signature has 64 bytes")
    return raw


def verify(public_key_pem: str, signature: str, message: bytes) -> bool:
    """Tell whether `signature` (base64) is the key's signature of `message`."""
    try:
        load_public_key(public_key_pem).verify(decode_signature(signature), message)
    except (InvalidSignature, ValueError):
        return False
    return True


def sign(private_key: Ed25519PrivateKey, message: bytes) -> str:
    """Sign `message`, base64 (what a manufacturer's tooling does; used by tests and simulator)."""
    return base64.b64encode(private_key.sign(message)).decode()


def public_pem(private_key: Ed25519PrivateKey) -> str:
    """Return the PEM of the key's public half."""
    return (
        private_key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def safe_file_name(name: str) -> bool:
    """Tell whether `name` is a plain file name (no path, no traversal, no control characters)."""
    return bool(_FILE_NAME.match(name)) and ".." not in name


class TargetStatus(StrEnum):
    """Where one device's update stands."""

    PENDING = "pending"
    OFFERED = "offered"
    DOWNLOADING = "downloading"
    INSTALLING = "installing"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    ROLLED_BACK = "rolled_back"
    TIMED_OUT = "timed_out"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"


IN_FLIGHT = frozenset({TargetStatus.OFFERED, TargetStatus.DOWNLOADING, TargetStatus.INSTALLING})
SUCCESSES = frozenset({TargetStatus.SUCCEEDED, TargetStatus.SKIPPED})
FAILURES = frozenset({TargetStatus.FAILED, TargetStatus.ROLLED_BACK, TargetStatus.TIMED_OUT})


class CampaignStatus(StrEnum):
    """Where a campaign stands."""

    RUNNING = "running"
    PAUSED = "paused"
    CANCELLED = "cancelled"
    COMPLETED = "completed"


def wave_ends(percentages: list[float], total: int) -> list[int]:
    """Return, per wave, how many targets (cumulatively) it releases; each wave at least one more.

    Waves that would release nobody new are dropped, so 1% of 50 devices is one device, not none.
    """
    ends: list[int] = []
    if total == 0:
        return ends
    for percent in percentages:
        end = min(total, max(math.ceil(total * percent / 100), (ends[-1] if ends else 0) + 1))
        if not ends or end > ends[-1]:
            ends.append(end)
    if ends and ends[-1] < total:
        ends.append(total)
    return ends


@dataclass(frozen=True)
class Tally:
    """How the released waves of a campaign are doing."""

    released: int
    succeeded: int
    failed: int
    finished: int


@dataclass(frozen=True)
class Decision:
    """What the campaign should do next: "advance", "complete", "pause" (with why), or "wait"."""

    action: str
    reason: str | None = None


def decide(
    tally: Tally,
    *,
    success_threshold: float,
    error_threshold: float,
    failures_accepted: int,
    last_wave: bool,
) -> Decision:
    """Decide a running campaign's next step from its released waves (hawkBit's thresholds)."""
    if tally.released == 0:
        return Decision("complete" if last_wave else "advance")
    new_failures = tally.failed - failures_accepted
    if new_failures > 0 and new_failures / tally.released > error_threshold:
        return Decision(
            "pause",
            f"{new_failures} of {tally.released} updates failed, "
            f"above the error threshold of {error_threshold:.0%}",
        )
    reached = tally.succeeded / tally.released >= success_threshold
    if reached and not last_wave:
        return Decision("advance")
    if tally.finished < tally.released:
        return Decision("wait")
    if reached:
        return Decision("complete")
    return Decision(
        "pause",
        f"the wave ended with {tally.succeeded} of {tally.released} updated, "
        f"below the success threshold of {success_threshold:.0%}",
    )


def parse_window(window: str) -> tuple[dt.time, dt.time]:
    """Parse `HH:MM-HH:MM`."""
    start, end = window.split("-")
    return dt.time.fromisoformat(start), dt.time.fromisoformat(end)


def in_window(window: str, moment: dt.datetime) -> bool:
    """Tell whether `moment` (taken in UTC) falls in the daily window; it may span midnight."""
    start, end = parse_window(window)
    now = moment.astimezone(dt.UTC).time()
    if start <= end:
        return start <= now < end
    return now >= start or now < end
