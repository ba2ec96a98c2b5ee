"""Reading the S3 ObjectCreated events that announce uploaded files, and building them."""

from __future__ import annotations

from typing import Any

import pytest

from medcloud.ingest.upload_files import (
    NotAnUpload,
    Outcome,
    UploadOutcome,
    file_format,
    object_created_event,
    object_key,
    summarise,
)

DEVICE = "3f1c5e9a-1111-4222-8333-944455556666"


def record(key: str, *, bucket: str = "readings", name: str = "ObjectCreated:Put") -> Any:
    """One record as S3 sends it (the key already URL-encoded)."""
    return {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": "eu-west-1",
        "eventName": name,
        "s3": {
            "s3SchemaVersion": "1.0",
            "bucket": {"name": bucket, "arn": f"arn:aws:s3:::{bucket}"},
            "object": {"key": key, "size": 1024, "eTag": "0123456789abcdef"},
        },
    }


def test_the_key_of_an_upload_is_decoded_as_s3_encodes_it() -> None:
    encoded = f"uploads/{DEVICE}/2024-05-01T10%3A00%3A00%2B02%3A00.ndjson"
    assert object_key(record(encoded), bucket="readings", prefix="") == (
        f"uploads/{DEVICE}/2024-05-01T10:00:00+02:00.ndjson"
    )


def test_the_store_prefix_is_taken_off_the_key() -> None:
    key = object_key(record(f"site-a/uploads/{DEVICE}/a.json"), bucket="readings", prefix="site-a")
    assert key == f"uploads/{DEVICE}/a.json"


@pytest.mark.parametrize(
    ("event", "why"),
    [
        (record(f"uploads/{DEVICE}/a.json", name="ObjectRemoved:Delete"), "not an ObjectCreated"),
        (record(f"uploads/{DEVICE}/a.json", bucket="elsewhere"), "another bucket"),
        (record(f"processed/{DEVICE}/a.json"), "not under uploads/"),
        (record(f"quarantine/{DEVICE}/a.json.report.json"), "not under uploads/"),
        (record("uploads/..%2F..%2Fetc/passwd"), "not a valid object key"),
        (record(f"uploads/{DEVICE}/night+shift.json"), "not a valid object key"),  # a space
        ({"eventSource": "aws:sqs"}, "not an S3 event"),
    ],
)
def test_records_that_are_not_uploads_are_named_as_such(event: Any, why: str) -> None:
    with pytest.raises(NotAnUpload, match=why):
        object_key(event, bucket="readings", prefix="")


def test_a_key_outside_the_store_prefix_is_not_an_upload() -> None:
    with pytest.raises(NotAnUpload, match="prefix"):
        object_key(record(f"uploads/{DEVICE}/a.json"), bucket="readings", prefix="site-a")


def test_a_local_store_accepts_any_bucket_name() -> None:
    assert object_key(record(f"uploads/{DEVICE}/a.json", bucket="local"), bucket=None, prefix="")


def test_the_event_the_watcher_builds_reads_back_as_the_same_key() -> None:
    key = f"uploads/{DEVICE}/date=2024-05-01/10:00:00+02:00.json.gz"
    event = object_created_event(key, bucket="readings", prefix="site-a", size=10)
    [built] = event["Records"]
    assert built["s3"]["object"]["key"] == (
        f"site-a/uploads/{DEVICE}/date%3D2024-05-01/10%3A00%3A00%2B02%3A00.json.gz"
    )
    assert object_key(built, bucket="readings", prefix="site-a") == key


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("a.json", ("application/json", None)),
        ("a.ndjson", ("application/x-ndjson", None)),
        ("a.JSON.GZ", ("application/json", "gzip")),
        ("a.ndjson.gz", ("application/x-ndjson", "gzip")),
        ("a.csv", None),
        ("a.gz", None),
        ("json", None),
    ],
)
def test_the_file_name_says_how_to_read_it(
    name: str, expected: tuple[str, str | None] | None
) -> None:
    assert file_format(name) == expected


def test_the_summary_counts_every_outcome() -> None:
    summary = summarise(
        [
            UploadOutcome("uploads/d/a.json", Outcome.STORED, "d", readings=3, stored=3),
            UploadOutcome("uploads/d/b.json", Outcome.QUARANTINED, "d", reason="2 problem(s)"),
            UploadOutcome("other/x", Outcome.IGNORED, reason="not under uploads/"),
        ]
    )
    assert summary["records"] == 3
    assert (summary["stored"], summary["quarantined"], summary["ignored"]) == (1, 1, 1)
    assert summary["failed"] == summary["rejected"] == summary["missing"] == 0
    assert summary["results"][0]["outcome"] == "stored"
