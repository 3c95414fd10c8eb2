"""The sharing ledger in S3 (JSON Lines, partitioned by day; the stack's Glue table reads the same objects),
and its HMAC key in Secrets Manager."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date
from typing import Any

from botocore.exceptions import ClientError

from birthnotify.application.ports import LedgerStats
from birthnotify.domain.ledger import DESTINATIONS_PREFIX, LEDGER_PREFIX, RESUME_PREFIX, check_key


class S3Ledger:
    """Ledger objects under ``ledger/day=YYYY-MM-DD/`` in the ledger bucket (encrypted by its default key)."""

    def __init__(self, s3: Any, bucket: str) -> None:
        self._s3 = s3
        self.bucket = bucket
        self.stats = LedgerStats()

    def put(self, key: str, lines: list[str]) -> None:
        self.stats.requests += 1
        self.stats.entries += len(lines)
        self._s3.put_object(
            Bucket=self.bucket, Key=key, Body=("\n".join(lines) + "\n").encode(), ContentType="application/x-ndjson"
        )

    def lines(self, since: date | None = None) -> Iterator[str]:
        """Every entry, object by object in key (so day) order. A national answer comes from Athena over the
        same objects (docs/ledger.md); this scan serves the CLI and tests."""
        paginator = self._s3.get_paginator("list_objects_v2")
        options: dict[str, Any] = {"Bucket": self.bucket, "Prefix": LEDGER_PREFIX}
        if since is not None:
            options["StartAfter"] = f"{LEDGER_PREFIX}day={since.isoformat()}"
        for page in paginator.paginate(**options):
            for item in page.get("Contents", []):
                body = self._s3.get_object(Bucket=self.bucket, Key=item["Key"])["Body"]
                for line in body.iter_lines():
                    if line.strip():
                        yield line.decode("utf-8")


def ledger_key(secrets: Any, secret_id: str) -> bytes:
    """The HMAC key: the secret's string value (the stack generates 64 random characters)."""
    value = secrets.get_secret_value(SecretId=secret_id)["SecretString"]
    return check_key(value.encode("utf-8"))


class S3Destinations:
    """Each trust's destination index, ``destinations/<trust>.json`` in the ledger bucket, written with S3's
    conditional writes (If-Match the version read, or If-None-Match for a first one)."""

    def __init__(self, s3: Any, bucket: str) -> None:
        self._s3 = s3
        self.bucket = bucket
        self.stats = LedgerStats()

    def _key(self, trust: str) -> str:
        return f"{DESTINATIONS_PREFIX}{trust}.json"

    def get(self, trust: str) -> tuple[dict[str, Any], str | None]:
        self.stats.requests += 1
        try:
            response = self._s3.get_object(Bucket=self.bucket, Key=self._key(trust))
        except ClientError as exc:
            if exc.response["Error"]["Code"] in ("NoSuchKey", "404"):
                return {}, None
            raise
        return json.loads(response["Body"].read()), str(response["ETag"])

    def put(self, trust: str, index: dict[str, Any], version: str | None) -> bool:
        self.stats.requests += 1
        condition = {"IfMatch": version} if version is not None else {"IfNoneMatch": "*"}
        try:
            self._s3.put_object(
                Bucket=self.bucket,
                Key=self._key(trust),
                ContentType="application/json",
                Body=json.dumps(index, separators=(",", ":"), sort_keys=True).encode(),
                **condition,
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] in ("PreconditionFailed", "ConditionalRequestConflict", "412", "409"):
                return False
            raise
        return True


class S3Snapshots:
    """Resume snapshots, ``resume/<trust>/<sha256>.json.gz`` in the ledger bucket (encrypted by its key; the
    bucket's lifecycle expires them with the checkpoint)."""

    def __init__(self, s3: Any, bucket: str) -> None:
        self._s3 = s3
        self.bucket = bucket
        self.stats = LedgerStats()

    @staticmethod
    def key(trust: str, sha256: str) -> str:
        return f"{RESUME_PREFIX}{trust}/{sha256}.json.gz"

    def load(self, trust: str, sha256: str) -> bytes | None:
        self.stats.requests += 1
        try:
            response = self._s3.get_object(Bucket=self.bucket, Key=self.key(trust, sha256))
        except ClientError as exc:
            if exc.response["Error"]["Code"] in ("NoSuchKey", "404"):
                return None
            raise
        return bytes(response["Body"].read())

    def save(self, trust: str, sha256: str, data: bytes) -> None:
        self.stats.requests += 1
        self._s3.put_object(Bucket=self.bucket, Key=self.key(trust, sha256), Body=data, ContentType="application/gzip")
