"""The hash chain, free of I/O: canonical form, hashing, signatures and streaming verification.

Entry `n` stores `hash = sha256(prev_hash || canonical(n, record))` as lowercase hex, where
`prev_hash` is entry `n - 1`'s hash (64 zeros for entry 1) and `canonical` is the JSON object of
the position and every field of the record, keys sorted, no whitespace, UTF-8, datetimes as
`YYYY-MM-DDTHH:MM:SS.ffffffZ` in UTC and `detail` as the JSON text it is stored as. So anyone
can re-check an export with a few lines of code, and SQLite and PostgreSQL yield the same hashes.

Signed checkpoints (`"{position}:{hash}"`) and a signed head (`"head:{position}:{hash}"`) pin the
chain with Ed25519: rewriting entries means re-signing, and dropping the tail leaves a head or a
checkpoint pointing past the last entry. The head signs a different message so a checkpoint's
signature can never pass for a head.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from typing import Any

import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

GENESIS_HASH = "0" * 64


@dataclass(frozen=True)
class Record:
    """What one entry says: everything its hash covers apart from its place in the chain."""

    event_id: str
    organisation_id: str
    occurred_at: dt.datetime
    recorded_at: dt.datetime
    actor_type: str
    actor_id: str | None
    action: str
    object_type: str | None
    object_id: str | None
    patient_id: str | None
    outcome: str
    source_ip: str | None
    request_id: str | None
    detail: str
    """Canonical JSON text, as made by `canonical_detail`."""


RECORD_FIELDS = tuple(field.name for field in fields(Record))


@dataclass(frozen=True)
class Entry:
    """A record at its position, linked to the entry before it."""

    position: int
    record: Record
    prev_hash: str
    hash: str


@dataclass(frozen=True)
class Seal:
    """A signed (position, hash) pair: a checkpoint, or the head of the chain."""

    position: int
    hash: str
    signed_at: dt.datetime
    key_id: str
    signature: str


@dataclass(frozen=True)
class Verification:
    """The outcome of checking the chain; `first_bad_position` is None when it is intact."""

    ok: bool
    entries_checked: int
    """Entries verified before the first bad position: all of them when the chain is intact."""
    first_bad_position: int | None = None
    reason: str | None = None


def canonical_time(value: dt.datetime) -> str:
    """Render an aware datetime in the one UTC form the hash covers."""
    if value.tzinfo is None:
        raise ValueError("naive datetimes have no canonical form; give a timezone")
    utc = value.astimezone(dt.UTC).replace(tzinfo=None)
    return utc.isoformat(timespec="microseconds") + "Z"


def canonical_detail(detail: Mapping[str, Any]) -> str:
    """Render a detail object as canonical JSON text: sorted keys, no whitespace."""
    return orjson.dumps(detail, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS).decode()


def canonical_bytes(position: int, record: Record) -> bytes:
    """Return the canonical JSON the hash of `record` at `position` covers."""
    document: dict[str, Any] = {"position": position}
    for name in RECORD_FIELDS:
        value = getattr(record, name)
        document[name] = canonical_time(value) if isinstance(value, dt.datetime) else value
    return orjson.dumps(document, option=orjson.OPT_SORT_KEYS)


def compute_hash(prev_hash: str, position: int, record: Record) -> str:
    """Return the hex SHA-256 that links `record` at `position` to `prev_hash`."""
    digest = hashlib.sha256(prev_hash.encode("ascii", "replace"))
    digest.update(canonical_bytes(position, record))
    return digest.hexdigest()


def link(record: Record, *, position: int, prev_hash: str) -> Entry:
    """Chain `record` at `position` after the entry whose hash is `prev_hash`."""
    return Entry(
        position=position,
        record=record,
        prev_hash=prev_hash,
        hash=compute_hash(prev_hash, position, record),
    )


def checkpoint_message(position: int, entry_hash: str) -> bytes:
    """Return the bytes a checkpoint signs."""
    return f"{position}:{entry_hash}".encode()


def head_message(position: int, entry_hash: str) -> bytes:
    """Return the bytes the head signs (domain-separated from checkpoints)."""
    return f"head:{position}:{entry_hash}".encode()


def key_id(public_key: Ed25519PublicKey) -> str:
    """Name a public key by a short digest of its raw bytes."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.urlsafe_b64encode(hashlib.sha256(raw).digest()[:12]).decode()


class Signer:
    """The Ed25519 key that seals checkpoints and the head."""

    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        self._private_key = private_key
        self.public_key = private_key.public_key()
        self.key_id = key_id(self.public_key)

    @classmethod
    def from_pem(cls, pem: bytes) -> Signer:
        """Load an unencrypted Ed25519 private key in PEM."""
        key = serialization.load_pem_private_key(pem, password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError("the audit signing key must be an Ed25519 key")
        return cls(key)

    @staticmethod
    def generate_pem() -> bytes:
        """Return a new Ed25519 private key in PKCS#8 PEM."""
        return Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    @property
    def public_keys(self) -> dict[str, Ed25519PublicKey]:
        """Return the keys that verify this signer's seals, by key id."""
        return {self.key_id: self.public_key}

    def seal_checkpoint(self, entry: Entry, *, at: dt.datetime) -> Seal:
        """Sign a checkpoint at `entry`."""
        return self._seal(entry, checkpoint_message(entry.position, entry.hash), at)

    def seal_head(self, entry: Entry, *, at: dt.datetime) -> Seal:
        """Sign `entry` as the head of the chain."""
        return self._seal(entry, head_message(entry.position, entry.hash), at)

    def _seal(self, entry: Entry, message: bytes, at: dt.datetime) -> Seal:
        signature = base64.urlsafe_b64encode(self._private_key.sign(message)).decode()
        return Seal(entry.position, entry.hash, at, self.key_id, signature)


def signature_problem(
    seal: Seal, message: bytes, keys: Mapping[str, Ed25519PublicKey]
) -> str | None:
    """Say why `seal` does not sign `message` with one of `keys`, or None when it does."""
    key = keys.get(seal.key_id)
    if key is None:
        return f"is signed with unknown key {seal.key_id!r}"
    try:
        key.verify(base64.urlsafe_b64decode(seal.signature.encode()), message)
    except (InvalidSignature, binascii.Error, ValueError):
        return "has an invalid signature"
    return None


class ChainVerifier:
    """Check a chain fed in position order, batch by batch, keeping only what the next link needs.

    The first fault found is the one reported: entries are checked in position order and each
    checkpoint right after the entry it seals, so the position named is the lowest one known to
    be wrong. Diagnoses, at the entry `n` where the expected link breaks:

    * a position other than `n` means entry `n` was deleted (or moved away);
    * a `prev_hash` equal to entry `n - 2`'s hash means an entry was slipped in at `n - 1`;
    * a `prev_hash` that differs while entry `n` is itself consistent means entry `n - 1` was
      rewritten, hash included;
    * otherwise, or when entry `n`'s own hash does not match its content, entry `n` is bad.

    An attacker who rewrites an entry and re-hashes everything after it is caught at the next
    checkpoint or at the head, which they cannot re-sign.
    """

    def __init__(self, keys: Mapping[str, Ed25519PublicKey]) -> None:
        self._keys = keys
        self._position = 0
        self._hash = GENESIS_HASH
        self._prev_hash: str | None = None
        self._sealed_up_to = 0
        self._pending: deque[Seal] = deque()
        self._fault: tuple[int, str] | None = None

    @property
    def failed(self) -> bool:
        """Tell whether a fault has been found (further input is then ignored)."""
        return self._fault is not None

    @property
    def last_position(self) -> int:
        """Return the position of the last entry that checked out."""
        return self._position

    def feed(self, entries: Iterable[Entry], checkpoints: Iterable[Seal] = ()) -> None:
        """Check the next entries, and the checkpoints at or before the last of them."""
        self._pending.extend(sorted(checkpoints, key=lambda seal: seal.position))
        for entry in entries:
            if self._fault is not None:
                return
            self._check_entry(entry)
            while (
                self._fault is None
                and self._pending
                and self._pending[0].position <= entry.position
            ):
                self._check_checkpoint(self._pending.popleft())

    def finish(self, *, head: Seal | None) -> Verification:
        """Check the tail against the signed head and any checkpoint beyond the last entry."""
        last = self._position
        if self._fault is None and self._pending:
            beyond = self._pending[0]
            self._fail(
                last + 1,
                f"a checkpoint seals entry {beyond.position} but the chain ends at {last}: "
                "the tail was removed",
            )
        if self._fault is None:
            self._check_head(head)
        if self._fault is not None:
            position, reason = self._fault
            return Verification(False, max(0, min(last, position - 1)), position, reason)
        return Verification(True, last)

    def _fail(self, position: int, reason: str) -> None:
        if self._fault is None:
            self._fault = (position, reason)

    def _check_entry(self, entry: Entry) -> None:
        expected = self._position + 1
        if entry.position != expected:
            if entry.position < expected:
                self._fail(entry.position, f"entry {entry.position} appears out of order")
            else:
                self._fail(expected, f"entry {expected} is missing")
            return
        consistent = compute_hash(entry.prev_hash, entry.position, entry.record) == entry.hash
        if entry.prev_hash != self._hash:
            if entry.prev_hash == self._prev_hash:
                self._fail(
                    expected - 1,
                    f"entry {expected - 1} was inserted: entry {expected} links past it",
                )
            elif consistent and expected > 1:
                self._fail(
                    expected - 1,
                    f"entry {expected - 1} was rewritten: entry {expected} links to another hash",
                )
            else:
                self._fail(expected, f"entry {expected} does not link to entry {expected - 1}")
            return
        if not consistent:
            self._fail(expected, f"entry {expected} does not match its hash")
            return
        self._prev_hash, self._hash, self._position = self._hash, entry.hash, entry.position

    def _check_checkpoint(self, seal: Seal) -> None:
        if seal.position != self._position:
            self._fail(seal.position, f"a checkpoint seals entry {seal.position}, which is missing")
            return
        problem = signature_problem(seal, checkpoint_message(seal.position, seal.hash), self._keys)
        if problem is not None:
            self._fail(seal.position, f"the checkpoint at entry {seal.position} {problem}")
        elif seal.hash != self._hash:
            self._fail(seal.position, f"entry {seal.position} differs from its signed checkpoint")
        else:
            self._sealed_up_to = seal.position

    def _check_head(self, head: Seal | None) -> None:
        last = self._position
        # Without a trustworthy head, nothing after the last good checkpoint is vouched for.
        unvouched = self._sealed_up_to + 1
        if head is None:
            if last:
                self._fail(unvouched, "the signed head is missing")
            return
        problem = signature_problem(head, head_message(head.position, head.hash), self._keys)
        if problem is not None:
            self._fail(unvouched, f"the head {problem}")
        elif head.position > last:
            self._fail(
                last + 1,
                f"the signed head is at entry {head.position} but the chain ends at {last}: "
                "the tail was removed",
            )
        elif head.position < last:
            self._fail(
                head.position + 1,
                f"entries after {head.position} were added outside the signed head",
            )
        elif head.hash != self._hash:
            self._fail(last, f"entry {last} differs from the signed head")


def verify_links(
    entries: Iterable[Entry],
    *,
    checkpoints: Iterable[Seal],
    head: Seal | None,
    keys: Mapping[str, Ed25519PublicKey],
) -> Verification:
    """Check a whole chain held in memory (or streamed by an iterator)."""
    verifier = ChainVerifier(keys)
    verifier.feed(entries, checkpoints)
    return verifier.finish(head=head)
