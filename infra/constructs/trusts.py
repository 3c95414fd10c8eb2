"""Per registered trust: an upload role its uploader_principals assume, which can write only under
``inbound/<ODS>/`` and read only its own reports under ``reports/<ODS>/``."""

from __future__ import annotations

from aws_cdk import CfnOutput
from aws_cdk import aws_iam as iam
from birthnotify.domain.registry import Registry, Trust
from birthnotify.shared.names import INBOUND_PREFIX, REPORTS_PREFIX
from constructs import Construct

from infra.config import StageConfig
from infra.constructs.keys import Keys, kms_via
from infra.constructs.policy import LeastPrivilegePolicy, assumable_role
from infra.constructs.storage import Storage


def _s3_context(object_arn: str) -> dict:
    """Use a bucket key only through S3, and only for objects under one prefix (S3 puts the object's ARN in
    the encryption context when the bucket has no S3 Bucket Key)."""
    return {
        **kms_via("s3"),
        "StringLike": {"kms:EncryptionContext:aws:s3:arn": object_arn},
    }


class Trusts(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: StageConfig,
        registry: Registry,
        storage: Storage,
        keys: Keys,
    ) -> None:
        super().__init__(scope, construct_id)
        self.roles: dict[str, iam.Role] = {}
        self.policies: dict[str, LeastPrivilegePolicy] = {}
        for trust in registry.trusts:
            if trust.uploader_principals:
                self._trust(config, trust, storage, keys)

    def _trust(self, config: StageConfig, trust: Trust, storage: Storage, keys: Keys) -> None:
        ods = trust.ods_code
        scope = Construct(self, ods)
        role, policy = assumable_role(
            scope,
            role_id="UploadRole",
            policy_id="UploadPolicy",
            name=f"{config.prefix}-upload-{ods}",
            description=f"{trust.name} ({ods}) uploads notification files and reads their reports",
            principals=trust.uploader_principals,
            policy_description=f"{trust.name}: its own upload prefix and reports only",
        )
        uploads, reports = storage.inbound_prefix_arn(ods), storage.reports_prefix_arn(ods)
        policy.allow(
            "UploadUnderOwnPrefix",
            ["s3:PutObject", "s3:AbortMultipartUpload"],
            [uploads],
            wildcard_reason=f"Object keys are the trust's file names, unknown in advance; the "
            f"wildcard is confined to the trust's own prefix {INBOUND_PREFIX}{ods}/.",
        )
        policy.allow(
            "EncryptOwnUploads",
            ["kms:GenerateDataKey", "kms:Encrypt", "kms:Decrypt"],
            # Decrypt: multipart uploads need it; the condition keeps it to the trust's own objects.
            [keys.inbound.key_arn],
            conditions=_s3_context(uploads),
        )
        policy.allow(
            "ReadOwnReports",
            ["s3:GetObject"],
            [reports],
            wildcard_reason=f"Report keys follow the trust's file names; the wildcard is confined to "
            f"the trust's own prefix {REPORTS_PREFIX}{ods}/.",
        )
        policy.allow(
            "ListOwnReports",
            ["s3:ListBucket"],
            [storage.reports.bucket_arn],
            conditions={"StringLike": {"s3:prefix": [f"{REPORTS_PREFIX}{ods}/", f"{REPORTS_PREFIX}{ods}/*"]}},
        )
        policy.allow("DecryptOwnReports", ["kms:Decrypt"], [keys.reports.key_arn], conditions=_s3_context(reports))
        CfnOutput(scope, "UploadRoleArn", value=role.role_arn, description=f"{trust.name}: role to assume to upload")
        self.roles[ods], self.policies[ods] = role, policy
