"""Versions, signatures, file names, waves, thresholds and maintenance windows, without I/O."""

from __future__ import annotations

import datetime as dt
import hashlib

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from medcloud.devices import firmware as fw
from medcloud.devices.firmware import Tally, decide
from medcloud.simulator import FailurePlan

EXPIRY = dt.datetime(2030, 1, 1, 12, 0, 30, 500, tzinfo=dt.UTC)


def test_versions_compare_numerically_not_as_text() -> None:
    assert fw.is_newer("2.10", "2.9")
    assert fw.is_newer("1.0.1", "1")
    assert not fw.is_newer("1.0", "1.0.0")
    with pytest.raises(ValueError):
        fw.parse_version("1.0-beta")


def test_a_signature_covers_the_digest_and_every_manifest_term() -> None:
    key = Ed25519PrivateKey.generate()
    terms = fw.canonical_manifest(model="M", version="2.0", min_version=None, expires_at=EXPIRY)
    assert terms["expires_at"] == "2030-01-01T12:00:30Z"
    digest = hashlib.sha256(b"image").hexdigest()
    signature = fw.sign(key, fw.signed_message(digest, terms))
    pem = fw.public_pem(key)
    assert fw.verify(pem, signature, fw.signed_message(digest, terms))
    other_digest = hashlib.sha256(b"imagf").hexdigest()
    assert not fw.verify(pem, signature, fw.signed_message(other_digest, terms))
    for term, value in (("model", "N"), ("version", "3.0"), ("min_version", "1.0")):
        assert not fw.verify(pem, signature, fw.signed_message(digest, {**terms, term: value}))
    assert not fw.verify(pem, "not base64!", fw.signed_message(digest, terms))


def test_only_ed25519_pem_keys_are_accepted() -> None:
    with pytest.raises(ValueError):
        fw.load_public_key("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")


@pytest.mark.parametrize(
    ("name", "safe"),
    [
        ("pulseox-2.0.bin", True),
        ("../x.bin", False),
        ("a/b", False),
        ("a\\b", False),
        (".env", False),
        ("x..bin", False),
        ("name\n.bin", False),
        ("", False),
    ],
)
def test_file_names_are_labels_never_paths(name: str, safe: bool) -> None:
    assert fw.safe_file_name(name) is safe


def test_waves_release_at_least_one_more_device_each() -> None:
    assert fw.wave_ends([1, 10, 50, 100], 200) == [2, 20, 100, 200]
    assert fw.wave_ends([1, 10, 50, 100], 5) == [1, 2, 3, 5]
    assert fw.wave_ends([1, 10, 50, 100], 1) == [1]
    assert fw.wave_ends([100], 0) == []


def test_a_wave_that_reaches_its_success_threshold_releases_the_next() -> None:
    tally = Tally(released=20, succeeded=18, failed=1, finished=19)

    def step(of: Tally, *, last_wave: bool) -> str:
        return decide(
            of,
            success_threshold=0.9,
            error_threshold=0.1,
            failures_accepted=0,
            last_wave=last_wave,
        ).action

    assert step(tally, last_wave=False) == "advance"
    assert step(tally, last_wave=True) == "wait"
    assert (
        step(Tally(released=20, succeeded=19, failed=1, finished=20), last_wave=True) == "complete"
    )


def test_failures_above_the_error_threshold_pause_the_campaign() -> None:
    tally = Tally(released=2, succeeded=1, failed=1, finished=2)
    decision = decide(
        tally, success_threshold=0.9, error_threshold=0.1, failures_accepted=0, last_wave=False
    )
    assert decision.action == "pause"
    assert "error threshold" in (decision.reason or "")
    accepted = decide(
        tally, success_threshold=0.5, error_threshold=0.1, failures_accepted=1, last_wave=False
    )
    assert accepted.action == "advance"


def test_a_finished_wave_below_its_success_threshold_pauses() -> None:
    tally = Tally(released=10, succeeded=8, failed=1, finished=10)
    decision = decide(
        tally, success_threshold=0.9, error_threshold=0.2, failures_accepted=0, last_wave=False
    )
    assert decision.action == "pause"
    assert "success threshold" in (decision.reason or "")


@pytest.mark.parametrize(
    ("window", "hour", "inside"),
    [("02:00-05:00", 3, True), ("02:00-05:00", 5, False), ("22:00-04:00", 23, True)],
)
def test_maintenance_windows_may_span_midnight(window: str, hour: int, inside: bool) -> None:
    moment = dt.datetime(2026, 1, 1, hour, 0, tzinfo=dt.UTC)
    assert fw.in_window(window, moment) is inside
    assert fw.in_window("22:00-04:00", moment.replace(hour=1)) is True


def test_the_simulators_failure_plan_fails_exactly_its_share_early() -> None:
    plan = FailurePlan(0.3)
    outcomes = [plan.next_fails() for _ in range(100)]
    assert sum(outcomes) == 30
    assert outcomes[:2] == [False, True]
    few = FailurePlan(0.02)
    assert sum(few.next_fails() for _ in range(200)) == 4
