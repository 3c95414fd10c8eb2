"""The inbound and reports buckets."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import IO, Any

from aws_lambda_powertools.utilities.streaming import S3Object

from birthnotify.adapters.reports import write_report
from birthnotify.application.ports import FetchedUpload, StoredUpload
from birthnotify.domain.messages import FileReport
from birthnotify.domain.uploads import InboundObject
from birthnotify.shared.names import REPORTS_PREFIX


class S3Uploads:
    """Uploads in the inbound bucket, read as streams (Powertools' S3Object reads ranges on demand, so
    memory does not grow with the file)."""

    def __init__(self, s3: Any) -> None:
        self.client = s3

    def fetch(self, upload: InboundObject) -> FetchedUpload:
        # GetObject answers what HeadObject would (size, time, metadata) with the body not yet read: one request.
        args = {"Bucket": upload.bucket, "Key": upload.key}
        if upload.version_id:
            args["VersionId"] = upload.version_id
        response = self.client.get_object(**args)
        return FetchedUpload(
            size=response["ContentLength"],
            last_modified=response["LastModified"],
            body=response["Body"],
            metadata=dict(response.get("Metadata", {})),
        )

    def open(self, upload: InboundObject) -> IO[bytes]:
        return S3Object(bucket=upload.bucket, key=upload.key, version_id=upload.version_id, boto3_client=self.client)


class S3ReportReader:
    """Reports read back from the reports bucket (to send them to a trust by MESH), as streams."""

    def __init__(self, s3: Any, bucket: str) -> None:
        self.client = s3
        self.bucket = bucket

    def open(self, key: str) -> tuple[IO[bytes], int]:
        response = self.client.get_object(Bucket=self.bucket, Key=key)
        return response["Body"], int(response["ContentLength"])


class S3Reports:
    """The trusts' reports in the reports bucket."""

    def __init__(self, s3: Any, bucket: str) -> None:
        self.client = s3
        self.bucket = bucket

    def write(self, report: FileReport, row_errors: Iterable[str], row_warnings: Iterable[str]) -> None:
        write_report(self.client, self.bucket, report, row_errors, row_warnings)


class S3ProcessedFiles:
    """The reports bucket's reports and the inbound bucket's uploads, for re-delivery (application.redeliver)."""

    def __init__(self, s3: Any, reports_bucket: str) -> None:
        self.client = s3
        self.reports_bucket = reports_bucket
        self._uploads = S3Uploads(s3)

    def reports(self) -> Iterator[FileReport]:
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.reports_bucket, Prefix=REPORTS_PREFIX):
            for listed in page.get("Contents", []):
                if listed["Key"].endswith(".json"):
                    body = self.client.get_object(Bucket=self.reports_bucket, Key=listed["Key"])["Body"].read()
                    yield FileReport.model_validate_json(body)

    def versions(self, bucket: str, key: str) -> list[StoredUpload]:
        found = []
        paginator = self.client.get_paginator("list_object_versions")
        for page in paginator.paginate(Bucket=bucket, Prefix=key):
            for version in page.get("Versions", []):
                if version["Key"] == key:
                    version_id = version.get("VersionId")
                    found.append(
                        StoredUpload(
                            InboundObject(bucket, key, None if version_id == "null" else version_id),
                            version["LastModified"],
                        )
                    )
        return sorted(found, key=lambda stored: stored.uploaded_at, reverse=True)

    def open(self, upload: InboundObject) -> IO[bytes]:
        return self._uploads.open(upload)
