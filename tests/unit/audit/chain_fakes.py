"""Chains built in memory, and the tampering an attacker with write access could do to them."""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from medcloud.audit.chain import (
    GENESIS_HASH,
    ChainVerifier,
    Entry,
    Record,
    Seal,
    Signer,
    canonical_detail,
    compute_hash,
    link,
)

T0 = dt.datetime(2026, 3, 1, 8, 0, tzinfo=dt.UTC)


@functools.cache
def signer() -> Signer:
    """The audit key of the chains built here."""
    return Signer(Ed25519PrivateKey.generate())


@functools.cache
def mallory_signer() -> Signer:
    """A key nobody trusts."""
    return Signer(Ed25519PrivateKey.generate())


def keys() -> dict[str, Ed25519PublicKey]:
    return signer().public_keys


def record(i: int, **changes: object) -> Record:
    base = Record(
        event_id=f"00000000-0000-4000-8000-{i:012d}",
        organisation_id="org-stmary",
        occurred_at=T0 + dt.timedelta(seconds=i),
        recorded_at=T0 + dt.timedelta(seconds=i, milliseconds=5),
        actor_type="user",
        actor_id="u-alice",
        action="readings.read",
        object_type="device",
        object_id=f"device-{i % 3}",
        patient_id="patient-7",
        outcome="success",
        source_ip="10.0.0.1",
        request_id=f"req-{i}",
        detail=canonical_detail({"count": i}),
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


@dataclass
class Log:
    """A chain as the tables hold it."""

    entries: list[Entry]
    checkpoints: list[Seal]
    head: Seal | None

    def sorted_entries(self) -> list[Entry]:
        return sorted(self.entries, key=lambda entry: entry.position)

    def at(self, position: int) -> Entry:
        return next(entry for entry in self.entries if entry.position == position)

    def replace(self, position: int, entry: Entry) -> None:
        self.entries = [entry if e.position == position else e for e in self.entries]


def build(records: Sequence[Record], *, checkpoint_every: int = 3) -> Log:
    """Append `records` the way the service does: checkpoint every few, head always."""
    entries: list[Entry] = []
    checkpoints: list[Seal] = []
    head = None
    prev = GENESIS_HASH
    for position, rec in enumerate(records, start=1):
        entry = link(rec, position=position, prev_hash=prev)
        entries.append(entry)
        if position % checkpoint_every == 0:
            checkpoints.append(signer().seal_checkpoint(entry, at=rec.recorded_at))
        head = signer().seal_head(entry, at=rec.recorded_at)
        prev = entry.hash
    return Log(entries, checkpoints, head)


def verify_in_batches(log: Log, *, size: int) -> tuple[bool, int | None, str | None]:
    """Verify as the service does: batches of entries, each with the checkpoints among them."""
    verifier = ChainVerifier(keys())
    entries = log.sorted_entries()
    after = 0
    for start in range(0, len(entries), size):
        if verifier.failed:
            break
        batch = entries[start : start + size]
        last = batch[-1].position
        verifier.feed(batch, [c for c in log.checkpoints if after < c.position <= last])
        after = last
    if not verifier.failed:
        verifier.feed((), [c for c in log.checkpoints if c.position > after][:1])
    result = verifier.finish(head=log.head)
    return result.ok, result.first_bad_position, result.reason


# Tampering, each returning the position verification must name.


def edit(log: Log, position: int, field: str) -> int:
    """Change one stored value without touching any hash."""
    entry = log.at(position)
    if field == "prev_hash":
        changed = dataclasses.replace(entry, prev_hash=_other_hash(entry.prev_hash))
    elif field == "hash":
        changed = dataclasses.replace(entry, hash=_other_hash(entry.hash))
    else:
        changed = dataclasses.replace(entry, record=_edited(entry.record, field))
    log.replace(position, changed)
    return position


def rewrite(log: Log, position: int, field: str) -> int:
    """Change one stored value and recompute that entry's hash to match."""
    entry = log.at(position)
    rec = _edited(entry.record, field)
    log.replace(position, link(rec, position=position, prev_hash=entry.prev_hash))
    return position


def delete(log: Log, position: int) -> int:
    log.entries = [e for e in log.entries if e.position != position]
    return position


def swap(log: Log, position: int) -> int:
    """Exchange the positions of entries `position` and `position + 1`."""
    first, second = log.at(position), log.at(position + 1)
    moved = {
        id(first): dataclasses.replace(first, position=position + 1),
        id(second): dataclasses.replace(second, position=position),
    }
    log.entries = [moved.get(id(e), e) for e in log.entries]
    return position


def truncate(log: Log, position: int) -> int:
    """Remove entries from `position` to the end."""
    log.entries = [e for e in log.entries if e.position < position]
    return position


def insert(log: Log, position: int) -> int:
    """Slip a well-formed entry in at `position`, moving the later ones up by one."""
    prev = GENESIS_HASH if position == 1 else log.at(position - 1).hash
    forged = link(record(10_000, action="auth.login"), position=position, prev_hash=prev)
    moved = [
        dataclasses.replace(e, position=e.position + 1) if e.position >= position else e
        for e in log.entries
    ]
    log.entries = [*moved, forged]
    return position


def _edited(rec: Record, field: str) -> Record:
    value = getattr(rec, field)
    if isinstance(value, dt.datetime):
        new: object = value + dt.timedelta(microseconds=1)
    elif field == "detail":
        new = canonical_detail({"count": -1, "tampered": True})
    elif value is None:
        new = "x"
    else:
        new = value + "x"
    return dataclasses.replace(rec, **{field: new})  # type: ignore[arg-type]


def _other_hash(value: str) -> str:
    return compute_hash(value, 0, record(0))
