"""Sealed secrets: they open with any configured key, reseal under the first, and a wrong key
fails saying what to do, never showing a key."""

from __future__ import annotations

import stat
from collections.abc import Iterator
from pathlib import Path

import pyotp
import pytest
from pydantic import SecretStr

from medcloud.config import Settings
from medcloud.platform.db import Database, create_database
from medcloud.platform.sealing import (
    DataKeyError,
    SealBroken,
    Sealed,
    Sealer,
    bind,
    key_file,
    load_sealer,
    looks_sealed,
    new_key,
)

OLD_KEY = new_key()
NEW_KEY = new_key()
TOTP_SECRET = pyotp.random_base32()


def unopened(tmp_path: Path, name: str) -> Database:
    # Engines connect lazily: no file is opened or made here.
    return create_database(f"sqlite+aiosqlite:///{tmp_path / name}")


@pytest.fixture
def database(tmp_path: Path) -> Iterator[Database]:
    yield unopened(tmp_path, "unopened.db")


def test_a_sealed_secret_opens_to_what_was_sealed_and_does_not_show_it() -> None:
    sealer = Sealer([OLD_KEY])
    sealed = sealer.seal(TOTP_SECRET)
    assert TOTP_SECRET not in sealed
    assert sealer.unseal(sealed) == TOTP_SECRET


def test_the_same_secret_seals_differently_each_time() -> None:
    sealer = Sealer([OLD_KEY])
    assert sealer.seal(TOTP_SECRET) != sealer.seal(TOTP_SECRET)


def test_an_old_key_still_opens_what_it_sealed_once_a_new_one_is_first() -> None:
    sealed_before = Sealer([OLD_KEY]).seal(TOTP_SECRET)
    rotating = Sealer([NEW_KEY, OLD_KEY])
    assert rotating.unseal(sealed_before) == TOTP_SECRET
    # New values are sealed under the first key alone.
    assert Sealer([NEW_KEY]).unseal(rotating.seal(TOTP_SECRET)) == TOTP_SECRET


def test_resealing_puts_a_value_under_the_first_key_so_the_old_one_can_go() -> None:
    sealed_before = Sealer([OLD_KEY]).seal(TOTP_SECRET)
    resealed = Sealer([NEW_KEY, OLD_KEY]).reseal(sealed_before)
    assert Sealer([NEW_KEY]).unseal(resealed) == TOTP_SECRET
    with pytest.raises(SealBroken):
        Sealer([OLD_KEY]).unseal(resealed)


def test_a_wrong_key_fails_saying_which_setting_to_check() -> None:
    sealed = Sealer([OLD_KEY]).seal(TOTP_SECRET)
    with pytest.raises(SealBroken) as refused:
        Sealer([NEW_KEY]).unseal(sealed)
    assert "MEDCLOUD_DATA_KEYS" in str(refused.value)
    assert NEW_KEY not in str(refused.value) and OLD_KEY not in str(refused.value)


def test_a_value_stored_in_clear_does_not_pass_for_a_sealed_one() -> None:
    with pytest.raises(SealBroken):
        Sealer([OLD_KEY]).unseal(TOTP_SECRET)
    with pytest.raises(SealBroken):
        Sealer([OLD_KEY]).reseal("whsec_" + "x" * 43)


def test_a_malformed_key_is_refused_by_its_position_never_by_its_value() -> None:
    malformed = "not-a-fernet-key-at-all"
    with pytest.raises(DataKeyError) as refused:
        Sealer.from_text(f"{OLD_KEY},{malformed}")
    assert "data key 2" in str(refused.value)
    assert malformed not in str(refused.value) and OLD_KEY not in str(refused.value)
    with pytest.raises(DataKeyError):
        Sealer.from_text(" , ")


def test_keys_may_be_separated_by_commas_or_line_breaks_and_the_first_seals() -> None:
    listed = Sealer.from_text(f" {NEW_KEY} ,\n{OLD_KEY}\n")
    assert listed.count == 2
    assert Sealer([NEW_KEY]).unseal(listed.seal(TOTP_SECRET)) == TOTP_SECRET


def test_a_sealed_value_is_told_apart_from_the_secrets_kept_in_clear_before() -> None:
    assert looks_sealed(Sealer([OLD_KEY]).seal(TOTP_SECRET))
    assert not looks_sealed(TOTP_SECRET)
    assert not looks_sealed("JBSWY3DPEHPK3PXP")  # the 16-character secrets of older apps
    assert not looks_sealed("whsec_" + "A" * 43)
    assert not looks_sealed("whsec_" + "A" * 42)


def test_the_column_type_seals_on_write_and_opens_on_read_with_the_keys_bound(
    database: Database,
) -> None:
    bind(database, Sealer([OLD_KEY]))
    column = Sealed()
    stored = column.process_bind_param(TOTP_SECRET, database.writer.dialect)
    assert stored is not None and looks_sealed(stored)
    assert Sealer([OLD_KEY]).unseal(stored) == TOTP_SECRET
    assert column.process_result_value(stored, database.reader.dialect) == TOTP_SECRET
    assert column.process_bind_param(None, database.writer.dialect) is None


def test_a_database_without_keys_bound_refuses_to_store_a_secret(tmp_path: Path) -> None:
    unbound = unopened(tmp_path, "unbound.db")
    with pytest.raises(DataKeyError, match="no data keys are bound"):
        Sealed().process_bind_param(TOTP_SECRET, unbound.writer.dialect)


def test_two_databases_in_one_process_keep_their_own_keys(tmp_path: Path) -> None:
    first, second = unopened(tmp_path, "first.db"), unopened(tmp_path, "second.db")
    bind(first, Sealer([OLD_KEY]))
    bind(second, Sealer([NEW_KEY]))
    stored = Sealed().process_bind_param(TOTP_SECRET, first.writer.dialect)
    assert stored is not None
    with pytest.raises(SealBroken):
        Sealed().process_result_value(stored, second.reader.dialect)


def test_without_configured_keys_a_private_key_file_is_made_once_and_kept(tmp_path: Path) -> None:
    settings = Settings(var_dir=tmp_path / "var")
    sealed = load_sealer(settings).seal(TOTP_SECRET)
    path = key_file(settings)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_sealer(settings).unseal(sealed) == TOTP_SECRET
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no partial file left


def test_configured_keys_are_used_and_no_key_file_is_made(tmp_path: Path) -> None:
    settings = Settings(var_dir=tmp_path / "var", data_keys=SecretStr(f"{NEW_KEY},{OLD_KEY}"))
    sealed = load_sealer(settings).seal(TOTP_SECRET)
    assert Sealer([NEW_KEY]).unseal(sealed) == TOTP_SECRET
    assert not key_file(settings).exists()


def test_blank_configured_keys_mean_the_key_file(tmp_path: Path) -> None:
    settings = Settings(var_dir=tmp_path / "var", data_keys=SecretStr("  "))
    load_sealer(settings)
    assert key_file(settings).exists()


def test_the_data_keys_setting_never_shows_its_value() -> None:
    settings = Settings(data_keys=SecretStr(NEW_KEY))
    assert NEW_KEY not in repr(settings) and NEW_KEY not in str(settings.model_dump())
