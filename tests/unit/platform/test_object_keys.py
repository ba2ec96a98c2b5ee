"""Object keys never leave the store's root; object storage is chosen by settings."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from medcloud.bootstrap import create_object_store
from medcloud.config import ObjectStoreSettings, Settings
from medcloud.platform.objects import (
    DirectoryObjectStore,
    InvalidKey,
    S3ObjectStore,
    check_key,
    parse_s3_url,
)


@pytest.mark.parametrize(
    "key",
    [
        "firmware/0f8e2c1d9a7b4e6f8a1b2c3d4e5f6a7b",
        "uploads/3f1c5e9a-1111-4222-8333-944455556666/2024-05-01T10-00.ndjson.gz",
        "quarantine/d1/a.json.report.json",
        "uploads/d1/date=2024-05-01/10:00:00+02:00.ndjson",
        "0f8e2c1d9a7b4e6f8a1b2c3d4e5f6a7b",  # firmware stored before keys had folders
    ],
)
def test_keys_of_the_shapes_medcloud_writes_are_valid(key: str) -> None:
    assert check_key(key) == key


@pytest.mark.parametrize(
    "key",
    [
        "",
        "/absolute",
        "trailing/",
        "a//b",
        "..",
        "uploads/../../etc/passwd",
        "uploads/./x",
        ".hidden",
        "uploads/d1/.partial",
        "back\\slash",
        "space in name",
        "percent%2e%2e",
        "nul\x00byte",
        "é",
        "x" * 256,
        "a/" * 600 + "b",
    ],
)
def test_keys_that_could_escape_or_confuse_a_store_are_refused(key: str) -> None:
    with pytest.raises(InvalidKey):
        check_key(key)


def test_an_s3_location_gives_the_bucket_and_a_prefix_without_slashes() -> None:
    assert parse_s3_url("s3://readings") == ("readings", "")
    assert parse_s3_url("s3://readings/site-a/") == ("readings", "site-a")
    assert parse_s3_url("s3://readings/site-a/eu") == ("readings", "site-a/eu")
    with pytest.raises(ValueError, match="no bucket"):
        parse_s3_url("s3:///prefix")
    with pytest.raises(InvalidKey):
        parse_s3_url("s3://readings/../other")


def test_the_embedded_default_is_a_directory_in_var_dir(tmp_path: Path) -> None:
    store = create_object_store(Settings(var_dir=tmp_path))
    assert isinstance(store, DirectoryObjectStore)
    assert store.root == tmp_path / "objects"
    assert not (tmp_path / "objects").exists()  # nothing is created until something is stored


def test_the_removed_firmware_directory_setting_is_refused_by_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MEDCLOUD_DEVICES__OBJECT_DIR", str(tmp_path / "fw"))
    with pytest.raises(ValidationError, match="MEDCLOUD_OBJECTS__URL=file://"):
        Settings(var_dir=tmp_path)


def test_an_s3_url_selects_the_s3_store_without_connecting(tmp_path: Path) -> None:
    settings = Settings(
        var_dir=tmp_path,
        objects=ObjectStoreSettings(url="s3://bucket/medcloud", endpoint_url="http://minio:9000"),
    )
    store = create_object_store(settings)
    assert isinstance(store, S3ObjectStore)
    assert (store.bucket, store.prefix) == ("bucket", "medcloud")


def test_object_storage_is_configured_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MEDCLOUD_OBJECTS__URL", "s3://uploads-bucket/prod")
    monkeypatch.setenv("MEDCLOUD_OBJECTS__SECRET_ACCESS_KEY", "s3cr3t")
    monkeypatch.setenv("MEDCLOUD_INGEST__UPLOAD_POLL_SECONDS", "0")
    settings = Settings()
    assert settings.objects.url == "s3://uploads-bucket/prod"
    assert settings.objects.secret_access_key is not None
    assert "s3cr3t" not in repr(settings)
    assert settings.ingest.upload_poll_seconds == 0


def test_an_unknown_object_store_scheme_is_refused() -> None:
    with pytest.raises(ValidationError):
        ObjectStoreSettings(url="ftp://files.example/objects")
