"""An S3-compatible service for the tests: moto's HTTP server on a free local port.

The server is real HTTP, so the S3 adapter is tested through boto3 exactly as it talks to AWS,
MinIO or Ceph; each test takes a bucket of its own.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

import boto3
from moto.server import ThreadedMotoServer
from pydantic import SecretStr

from medcloud.config import ObjectStoreSettings, Settings
from medcloud.platform.objects import S3ObjectStore

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

REGION = "us-east-1"
KEY_ID = "testing"
SECRET = "testing-secret"


@dataclass(frozen=True)
class S3Service:
    """Where the server listens, and what the tests keep asking of it."""

    endpoint_url: str

    def client(self) -> S3Client:
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name=REGION,
            aws_access_key_id=KEY_ID,
            aws_secret_access_key=SECRET,
        )

    def create_bucket(self) -> str:
        name = f"medcloud-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        return name

    def keys(self, bucket: str) -> list[str]:
        """Every key in the bucket, as S3 names it (with the store's prefix)."""
        listed = self.client().list_objects_v2(Bucket=bucket)
        return sorted(item["Key"] for item in listed.get("Contents", []))

    def store(self, bucket: str, prefix: str = "", **options: int) -> S3ObjectStore:
        return S3ObjectStore(
            bucket,
            prefix=prefix,
            endpoint_url=self.endpoint_url,
            region=REGION,
            access_key_id=KEY_ID,
            secret_access_key=SECRET,
            **options,
        )

    def settings(self, base: Settings, bucket: str, prefix: str = "medcloud") -> Settings:
        """`base`, with object storage in `bucket` under `prefix`."""
        objects = ObjectStoreSettings(
            url=f"s3://{bucket}/{prefix}",
            endpoint_url=self.endpoint_url,
            region=REGION,
            access_key_id=KEY_ID,
            secret_access_key=SecretStr(SECRET),
        )
        return base.model_copy(update={"objects": objects})


@contextmanager
def moto_s3() -> Iterator[S3Service]:
    """Run moto's S3 server on a free port for the duration of the block."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield S3Service(f"http://{host}:{port}")
    finally:
        server.stop()
