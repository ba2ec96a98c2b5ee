"""When a device credential works, and how rotation and revocation change that."""

from __future__ import annotations

import datetime as dt

import pytest
from pydantic import ValidationError

from medcloud.devices.models import DeviceCredential
from medcloud.devices.schemas import CredentialRead, CredentialRotate
from medcloud.platform.security import device_cache_key

T0 = dt.datetime(2026, 3, 1, 8, 0, tzinfo=dt.UTC)


def credential(
    *, expires_at: dt.datetime | None = None, revoked_at: dt.datetime | None = None
) -> DeviceCredential:
    return DeviceCredential(
        id="c-1",
        device_id="d-1",
        token_hash="0" * 64,
        created_at=T0,
        expires_at=expires_at,
        revoked_at=revoked_at,
        last_used_at=None,
    )


def test_a_fresh_credential_works_indefinitely() -> None:
    assert credential().works_at(T0 + dt.timedelta(days=3650))


def test_an_expiring_credential_works_until_but_not_at_its_expiry() -> None:
    expiring = credential(expires_at=T0 + dt.timedelta(hours=1))
    assert expiring.works_at(T0 + dt.timedelta(minutes=59, seconds=59))
    assert not expiring.works_at(T0 + dt.timedelta(hours=1))


def test_a_revoked_credential_never_works() -> None:
    assert not credential(revoked_at=T0).works_at(T0 - dt.timedelta(days=1))


def test_a_rotation_sets_the_end_of_a_credential_without_one() -> None:
    fresh = credential()
    assert fresh.expire_by(T0 + dt.timedelta(hours=1))
    assert fresh.expires_at == T0 + dt.timedelta(hours=1)


def test_a_rotation_shortens_but_never_lengthens_a_credentials_life() -> None:
    expiring = credential(expires_at=T0 + dt.timedelta(hours=2))
    assert expiring.expire_by(T0 + dt.timedelta(hours=1))
    assert not expiring.expire_by(T0 + dt.timedelta(hours=3))
    assert expiring.expires_at == T0 + dt.timedelta(hours=1)


def test_a_rotation_leaves_a_revoked_credential_revoked() -> None:
    revoked = credential(revoked_at=T0)
    assert not revoked.expire_by(T0 + dt.timedelta(hours=1))
    assert revoked.expires_at is None and revoked.revoked_at == T0


def test_revoking_twice_keeps_the_first_time() -> None:
    once = credential()
    assert once.revoke(T0)
    assert not once.revoke(T0 + dt.timedelta(minutes=5))
    assert once.revoked_at == T0


def test_the_grace_period_defaults_to_an_hour_and_allows_zero_to_seven_days() -> None:
    assert CredentialRotate().grace_seconds == 3600
    assert CredentialRotate(grace_seconds=0).grace_seconds == 0
    assert CredentialRotate(grace_seconds=7 * 24 * 3600).grace_seconds == 7 * 24 * 3600


@pytest.mark.parametrize("grace_seconds", [-1, 7 * 24 * 3600 + 1])
def test_a_grace_period_outside_the_bounds_is_refused(grace_seconds: int) -> None:
    with pytest.raises(ValidationError):
        CredentialRotate(grace_seconds=grace_seconds)


def test_a_credential_as_users_see_it_has_no_hash() -> None:
    assert not any("hash" in name for name in CredentialRead.model_fields)


def test_the_cache_key_is_the_one_the_http_layer_uses() -> None:
    assert device_cache_key("ab" * 32) == "device-token:" + "ab" * 32
