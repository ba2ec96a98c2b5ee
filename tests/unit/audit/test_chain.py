"""The hash chain on its own: canonical form, hashing, seals and verification, in memory."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medcloud.audit.chain import (
    GENESIS_HASH,
    RECORD_FIELDS,
    ChainVerifier,
    Record,
    Seal,
    canonical_bytes,
    canonical_detail,
    canonical_time,
    compute_hash,
    verify_links,
)
from tests.unit.audit import chain_fakes as fakes
from tests.unit.audit.chain_fakes import Log, build, keys, record, verify_in_batches

KNOWN_RECORD = Record(
    event_id="00000000-0000-0000-0000-000000000001",
    organisation_id="org-stmary",
    occurred_at=dt.datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=dt.UTC),
    recorded_at=dt.datetime(2026, 1, 2, 3, 4, 6, tzinfo=dt.UTC),
    actor_type="user",
    actor_id="u-alice",
    action="readings.read",
    object_type="device",
    object_id="d-1",
    patient_id="patient-7",
    outcome="success",
    source_ip="10.0.0.1",
    request_id="req-1",
    detail=canonical_detail({"count": 3, "b": [1, 2]}),
)


def verify(log: Log) -> tuple[bool, int | None, str | None]:
    result = verify_links(
        log.sorted_entries(), checkpoints=log.checkpoints, head=log.head, keys=keys()
    )
    return result.ok, result.first_bad_position, result.reason


def chain_of(n: int, *, checkpoint_every: int = 3) -> Log:
    return build([record(i) for i in range(1, n + 1)], checkpoint_every=checkpoint_every)


# The canonical form and the hash


def test_the_hash_of_a_known_entry_never_changes() -> None:
    # Pinned: changing the canonical form would break every chain already stored.
    assert (
        compute_hash(GENESIS_HASH, 1, KNOWN_RECORD)
        == "889d713338c89cdda36b5ab266ac49055226c823b05436fe43d2b8f4b774544e"
    )


def test_anyone_can_recompute_a_hash_with_the_standard_library() -> None:
    document: dict[str, object] = {"position": 1}
    for name in RECORD_FIELDS:
        value = getattr(KNOWN_RECORD, name)
        if isinstance(value, dt.datetime):
            value = value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        document[name] = value
    text = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    expected = hashlib.sha256(GENESIS_HASH.encode() + text.encode()).hexdigest()
    assert compute_hash(GENESIS_HASH, 1, KNOWN_RECORD) == expected


def test_the_same_instant_hashes_alike_in_any_timezone() -> None:
    paris = dt.timezone(dt.timedelta(hours=1))
    elsewhere = dataclasses.replace(
        KNOWN_RECORD, occurred_at=KNOWN_RECORD.occurred_at.astimezone(paris)
    )
    assert canonical_bytes(1, elsewhere) == canonical_bytes(1, KNOWN_RECORD)
    assert canonical_time(dt.datetime(2026, 1, 1, 1, tzinfo=paris)) == "2026-01-01T00:00:00.000000Z"


def test_a_naive_datetime_has_no_canonical_form() -> None:
    with pytest.raises(ValueError, match="naive"):
        canonical_time(dt.datetime(2026, 1, 1))


def test_detail_is_canonical_whatever_its_key_order() -> None:
    assert canonical_detail({"b": 1, "a": {"y": 2, "x": 1}}) == '{"a":{"x":1,"y":2},"b":1}'
    assert canonical_detail({"a": {"x": 1, "y": 2}, "b": 1}) == '{"a":{"x":1,"y":2},"b":1}'


def test_the_position_is_part_of_the_hash() -> None:
    assert compute_hash(GENESIS_HASH, 1, KNOWN_RECORD) != compute_hash(
        GENESIS_HASH, 2, KNOWN_RECORD
    )


@given(st.text(), st.text())
def test_the_canonical_form_is_what_the_standard_library_writes(action: str, actor: str) -> None:
    rec = dataclasses.replace(KNOWN_RECORD, action=action, actor_id=actor)
    try:
        expected = json.dumps(
            {
                "position": 4,
                **{
                    name: canonical_time(v) if isinstance(v, dt.datetime) else v
                    for name in RECORD_FIELDS
                    for v in [getattr(rec, name)]
                },
            },
            sort_keys=True,
            separators=(",", ":"),
            ensure_ascii=False,
        ).encode()
    except UnicodeEncodeError:  # lone surrogates are not valid UTF-8 for either encoder
        return
    assert canonical_bytes(4, rec) == expected


# Verification of intact chains


def test_an_empty_log_is_intact() -> None:
    assert verify(Log([], [], None)) == (True, None, None)


def test_an_untouched_chain_is_intact() -> None:
    log = chain_of(10)
    result = verify_links(log.entries, checkpoints=log.checkpoints, head=log.head, keys=keys())
    assert result.ok and result.entries_checked == 10 and result.first_bad_position is None


@pytest.mark.parametrize("size", [1, 2, 3, 7, 100])
def test_verifying_in_batches_agrees_with_verifying_at_once(size: int) -> None:
    log = chain_of(10)
    assert verify_in_batches(log, size=size) == (True, None, None)
    fakes.edit(log, 5, "action")
    assert verify_in_batches(log, size=size)[:2] == verify(log)[:2] == (False, 5)


# Each kind of tampering, named at its position


def test_an_edited_entry_is_named() -> None:
    log = chain_of(10)
    fakes.edit(log, 4, "patient_id")
    ok, position, reason = verify(log)
    assert (ok, position) == (False, 4)
    assert reason == "entry 4 does not match its hash"


def test_an_entry_rewritten_with_a_fresh_hash_is_named_by_its_successor() -> None:
    log = chain_of(10)
    fakes.rewrite(log, 4, "outcome")
    ok, position, reason = verify(log)
    assert (ok, position) == (False, 4)
    assert reason is not None and "rewritten" in reason


def test_a_rewritten_checkpointed_entry_disagrees_with_its_checkpoint() -> None:
    log = chain_of(10)
    fakes.rewrite(log, 6, "actor_id")
    assert verify(log)[:2] == (False, 6)


def test_a_rewritten_last_entry_disagrees_with_the_head() -> None:
    log = chain_of(10)
    fakes.rewrite(log, 10, "actor_id")
    assert verify(log) == (False, 10, "entry 10 differs from the signed head")


def test_a_deleted_entry_is_named() -> None:
    log = chain_of(10)
    fakes.delete(log, 5)
    assert verify(log) == (False, 5, "entry 5 is missing")


def test_swapped_entries_are_named() -> None:
    log = chain_of(10)
    fakes.swap(log, 7)
    assert verify(log)[:2] == (False, 7)


def test_a_truncated_tail_is_caught_by_a_checkpoint_beyond_it() -> None:
    log = chain_of(10)
    fakes.truncate(log, 5)
    ok, position, reason = verify(log)
    assert (ok, position) == (False, 5)
    assert reason is not None and "checkpoint seals entry 6" in reason


def test_a_tail_truncated_after_the_last_checkpoint_is_caught_by_the_head() -> None:
    log = chain_of(10)
    fakes.truncate(log, 10)
    ok, position, reason = verify(log)
    assert (ok, position) == (False, 10)
    assert reason is not None and "head is at entry 10" in reason


def test_an_inserted_entry_is_named() -> None:
    log = chain_of(10)
    fakes.insert(log, 5)
    ok, position, reason = verify(log)
    assert (ok, position) == (False, 5)
    assert reason is not None and "inserted" in reason


def test_an_entry_appended_behind_the_heads_back_is_caught() -> None:
    log = chain_of(10)
    fakes.insert(log, 11)
    assert verify(log) == (False, 11, "entries after 10 were added outside the signed head")


# Seals


def test_a_missing_head_leaves_everything_after_the_last_checkpoint_unvouched() -> None:
    log = chain_of(10)
    log.head = None
    assert verify(log) == (False, 10, "the signed head is missing")


def test_a_head_moved_back_onto_a_checkpoint_signature_does_not_verify() -> None:
    log = chain_of(10)
    fakes.truncate(log, 10)
    checkpoint = log.checkpoints[-1]
    log.checkpoints = log.checkpoints[:-1]
    # Mallory re-points the head at entry 9 using the checkpoint's genuine signature.
    log.head = dataclasses.replace(checkpoint)
    ok, position, reason = verify(log)
    assert (ok, position) == (False, 7)
    assert reason == "the head has an invalid signature"


def test_a_head_signed_by_another_key_is_refused() -> None:
    log = chain_of(4)
    fakes.truncate(log, 4)
    log.head = fakes.mallory_signer().seal_head(log.at(3), at=fakes.T0)
    ok, position, reason = verify(log)
    assert (ok, position) == (False, 4)
    assert reason is not None and "unknown key" in reason


def test_a_checkpoint_with_a_forged_signature_is_named() -> None:
    log = chain_of(10)
    forged = dataclasses.replace(log.checkpoints[1], signature=log.checkpoints[0].signature)
    log.checkpoints[1] = forged
    assert verify(log) == (False, 6, "the checkpoint at entry 6 has an invalid signature")


def test_a_checkpoint_with_a_garbled_signature_is_named() -> None:
    log = chain_of(4)
    log.checkpoints[0] = dataclasses.replace(log.checkpoints[0], signature="not base64!")
    assert verify(log)[:2] == (False, 3)


def test_a_checkpoint_for_an_entry_that_never_existed_is_named() -> None:
    log = chain_of(4)
    fake = Seal(0, GENESIS_HASH, fakes.T0, fakes.signer().key_id, "")
    assert verify(Log(log.entries, [fake, *log.checkpoints], log.head))[:2] == (False, 0)


def test_verification_stops_at_the_first_fault() -> None:
    log = chain_of(10)
    fakes.edit(log, 3, "action")
    fakes.delete(log, 8)
    verifier = ChainVerifier(keys())
    verifier.feed(log.sorted_entries(), log.checkpoints)
    assert verifier.failed and verifier.last_position == 2
    result = verifier.finish(head=log.head)
    assert (result.ok, result.entries_checked, result.first_bad_position) == (False, 2, 3)


# Any single tampering, anywhere


JSON_INTEGERS = st.integers(-(2**63), 2**63 - 1)  # what the envelope's JSON encoder carries


def fields_to_edit() -> st.SearchStrategy[str]:
    return st.sampled_from([*RECORD_FIELDS, "prev_hash", "hash"])


@st.composite
def tampered_logs(draw: st.DrawFn) -> tuple[Log, int, str]:
    n = draw(st.integers(min_value=1, max_value=25))
    every = draw(st.integers(min_value=1, max_value=6))
    records = [
        record(
            i,
            actor_id=draw(st.none() | st.text(max_size=8)),
            action=draw(st.text(min_size=1, max_size=12)),
            detail=canonical_detail(
                draw(
                    st.dictionaries(
                        st.text(max_size=4), st.integers(-(2**63), 2**63 - 1) | st.text(max_size=4)
                    )
                )
            ),
        )
        for i in range(1, n + 1)
    ]
    log = build(records, checkpoint_every=every)
    kinds = ["edit", "rewrite", "delete", "truncate", "insert"] + (["swap"] if n > 1 else [])
    kind = draw(st.sampled_from(kinds))
    if kind == "edit":
        expected = fakes.edit(log, draw(st.integers(1, n)), draw(fields_to_edit()))
    elif kind == "rewrite":
        expected = fakes.rewrite(log, draw(st.integers(1, n)), draw(st.sampled_from(RECORD_FIELDS)))
    elif kind == "delete":
        expected = fakes.delete(log, draw(st.integers(1, n)))
    elif kind == "truncate":
        expected = fakes.truncate(log, draw(st.integers(1, n)))
    elif kind == "insert":
        expected = fakes.insert(log, draw(st.integers(1, n + 1)))
    else:
        expected = fakes.swap(log, draw(st.integers(1, n - 1)))
    return log, expected, kind


@settings(max_examples=150, deadline=None)
@given(tampered_logs(), st.integers(min_value=1, max_value=8))
def test_any_single_tampering_is_named_at_its_position(
    tampered: tuple[Log, int, str], batch_size: int
) -> None:
    log, expected, kind = tampered
    ok, position, reason = verify_in_batches(log, size=batch_size)
    assert not ok, kind
    assert position == expected, (kind, reason)
    assert verify(log)[:2] == (False, expected)


@settings(max_examples=50, deadline=None)
@given(st.integers(min_value=0, max_value=30), st.integers(1, 6), st.integers(1, 8))
def test_any_untouched_chain_is_intact(n: int, every: int, batch_size: int) -> None:
    assert verify_in_batches(chain_of(n, checkpoint_every=every), size=batch_size) == (
        True,
        None,
        None,
    )
