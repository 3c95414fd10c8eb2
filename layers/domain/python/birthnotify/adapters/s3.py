"""The inbound and reports buckets."""

from __future__ import annotations

from collections.abc import Iterable
from typing import IO, Any

from aws_lambda_powertools.utilities.streaming import S3Object

from birthnotify.adapters.reports import write_report
from birthnotify.application.ports import UploadHead
from birthnotify.domain.messages import FileReport
from birthnotify.domain.uploads import InboundObject


class S3Uploads:
    """Uploads in the inbound bucket, read as streams (Powertools' S3Object reads ranges on demand, so
    memory does not grow with the file)."""

    def __init__(self, s3: Any) -> None:
        self.client = s3

    def head(self, upload: InboundObject) -> UploadHead:
        args = {"Bucket": upload.bucket, "Key": upload.key}
        if upload.version_id:
            args["VersionId"] = upload.version_id
        head = self.client.head_object(**args)
        return UploadHead(size=head["ContentLength"], last_modified=head["LastModified"],
                          metadata=dict(head.get("Metadata", {})))

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
