"""The three buckets: inbound (trusts' uploads), reports (what each trust reads back), access logs.

All three block public access, enforce bucket-owner object ownership, are versioned, and deny any request
that is not TLS 1.2 or later. Inbound and reports are encrypted with their own customer-managed keys and log
every request to the access-log bucket. Raw uploads expire after ``raw_upload_retention_days``.
"""

from __future__ import annotations

from typing import Any

import jsii
from aws_cdk import Aws, Duration, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sqs as sqs
from birthnotify.shared.names import INBOUND_PREFIX, REPORTS_PREFIX
from constructs import Construct

from infra.config import StageConfig
from infra.constructs.policy import LeastPrivilegePolicy
from infra.nag import acknowledge_packs, skip_checkov

NOTIFICATIONS_HANDLER = "BucketNotificationsHandler050a0587b7544547bf325f094a3db834"
"""The construct id of CDK's singleton handler for Custom::S3BucketNotifications (aws-s3's
BucketNotificationsHandler), at the root of the stack."""
_DEPLOYMENT_ONLY = (
    "CDK's handler for Custom::S3BucketNotifications runs only while CloudFormation deploys the stack, "
    "to set the inbound bucket's notification"
)
NOTIFICATIONS_HANDLER_SKIPS = {
    "CKV_AWS_116": f"{_DEPLOYMENT_ONLY}: a failure fails and rolls back the deployment, where the operator "
    "sees it; a dead-letter queue would only keep a CloudFormation request nobody can answer any more.",
    "CKV_AWS_117": f"{_DEPLOYMENT_ONLY}: it calls only the S3 API (PutBucketNotificationConfiguration) and "
    "CloudFormation's response URL, with no VPC resource to reach.",
    "CKV_AWS_115": f"{_DEPLOYMENT_ONLY}, once per deployment that changes the notification: reserved "
    "concurrency would take from the account pool for a function that is idle between deployments.",
}
ACCESS_LOGS_NOT_LOGGED = (
    "This is the bucket the other buckets' access logs go to: logging its own requests into itself would "
    "log each delivery of a log, endlessly, and another log bucket would only move the question. Only the "
    "S3 logging service writes to it; it blocks public access, requires TLS, and is versioned."
)
NO_REPLICATION = (
    "Data must stay in the UK and AWS has one UK region (eu-west-2, London), so there is no "
    "second UK region to replicate to; versioning and retention protect against loss instead."
)


def _bucket_defaults(config: StageConfig) -> dict:
    return {
        "block_public_access": s3.BlockPublicAccess.BLOCK_ALL,
        "object_ownership": s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
        "enforce_ssl": True,
        "minimum_tls_version": 1.2,
        "versioned": True,
        "removal_policy": config.removal_policy,
    }


class Storage(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: StageConfig,
        inbound_key: kms.IKey,
        reports_key: kms.IKey,
    ) -> None:
        super().__init__(scope, construct_id)
        self.config = config
        # The role of CDK's Custom::S3BucketNotifications handler (the stack's one custom resource): given
        # here so that it gets exactly one permission and no AWS-managed policy (see notify_queue).
        self._notifications_role = iam.Role(
            self,
            "NotificationsHandlerRole",
            role_name=f"{config.prefix}-s3-notifications",
            description="Applies the inbound bucket's event notification during deployment",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
        )
        self.access_logs = s3.Bucket(
            self,
            "AccessLogs",
            # S3 server access logging can deliver only to a bucket encrypted with SSE-S3.
            encryption=s3.BucketEncryption.S3_MANAGED,
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="expire-access-logs",
                    expiration=Duration.days(config.access_log_retention_days),
                    noncurrent_version_expiration=Duration.days(1),
                    abort_incomplete_multipart_upload_after=Duration.days(1),
                )
            ],
            **_bucket_defaults(config),
        )
        self.inbound = self._kms_bucket(
            "Inbound",
            inbound_key,
            log_prefix="inbound/",
            notifications_handler_role=iam.Role.from_role_arn(
                self, "NotificationsHandlerRoleRef", self._notifications_role.role_arn, mutable=False
            ),
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="expire-raw-uploads",
                    expiration=Duration.days(config.raw_upload_retention_days),
                    noncurrent_version_expiration=Duration.days(1),
                    abort_incomplete_multipart_upload_after=Duration.days(1),
                ),
                s3.LifecycleRule(id="remove-expired-delete-markers", expired_object_delete_marker=True),
            ],
        )
        self.reports = self._kms_bucket(
            "Reports",
            reports_key,
            log_prefix="reports/",
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="expire-reports",
                    expiration=Duration.days(config.report_retention_days),
                    noncurrent_version_expiration=Duration.days(30),
                    abort_incomplete_multipart_upload_after=Duration.days(1),
                )
            ],
        )
        for bucket, key in ((self.inbound, inbound_key), (self.reports, reports_key)):
            _deny_other_encryption(bucket, key)
        self._acknowledge()

    def _kms_bucket(self, construct_id: str, key: kms.IKey, *, log_prefix: str, **options: Any) -> s3.Bucket:
        """A bucket encrypted with its own customer-managed key, logging to the access-log bucket."""
        return s3.Bucket(
            self,
            construct_id,
            encryption=s3.BucketEncryption.KMS,
            encryption_key=key,
            # No S3 Bucket Key: each object's KMS encryption context is then its own ARN, which lets a trust's
            # role use the key only for objects under its own prefix.
            bucket_key_enabled=False,
            server_access_logs_bucket=self.access_logs,
            server_access_logs_prefix=log_prefix,
            **options,
            **_bucket_defaults(self.config),
        )

    def notify_queue(self, queue: sqs.Queue, key: kms.Key) -> None:
        """S3 ObjectCreated under inbound/ -> ``queue`` (standard, encrypted with ``key``, which must not be
        the inbound bucket's key: the key policy would then depend on the bucket that depends on it)."""
        policy = LeastPrivilegePolicy(
            self,
            "NotificationsHandlerPolicy",
            role=self._notifications_role,
            name=f"{self.config.prefix}-s3-notifications",
            description="Set the inbound bucket's event notification, nothing else",
        )
        policy.allow("PutInboundNotification", ["s3:PutBucketNotification"], [self.inbound.bucket_arn])
        self.inbound.add_event_notification(
            s3.EventType.OBJECT_CREATED,
            _QueueDestination(queue, key),
            s3.NotificationKeyFilter(prefix=INBOUND_PREFIX),
        )
        # CDK makes its own inline policy for the handler role, which the immutable role reference ignores, so
        # it is never synthesized; take it out of the tree (the checks would report it) and make the
        # notification wait for the managed policy above instead.
        notifications = self.inbound.node.find_child("Notifications")
        notifications.node.try_remove_child("HandlerPolicy")
        notifications.node.find_child("Resource").node.add_dependency(policy.policy)
        handler = Stack.of(self).node.find_child(NOTIFICATIONS_HANDLER).node.default_child
        for check, reason in NOTIFICATIONS_HANDLER_SKIPS.items():
            skip_checkov(handler, check, reason)

    def inbound_prefix_arn(self, ods_code: str | None = None) -> str:
        return self.inbound.arn_for_objects(f"{INBOUND_PREFIX}{ods_code}/*" if ods_code else f"{INBOUND_PREFIX}*")

    def reports_prefix_arn(self, ods_code: str | None = None) -> str:
        return self.reports.arn_for_objects(f"{REPORTS_PREFIX}{ods_code}/*" if ods_code else f"{REPORTS_PREFIX}*")

    def _acknowledge(self) -> None:
        for bucket in (self.access_logs, self.inbound, self.reports):
            acknowledge_packs(bucket, "S3BucketReplicationEnabled", NO_REPLICATION)
        acknowledge_packs(
            self.access_logs,
            "S3DefaultEncryptionKMS",
            "S3 server access logging delivers only to buckets encrypted with SSE-S3 (AES-256); "
            "SSE-KMS is not supported for a log target. The logs hold request metadata, no "
            "file contents.",
        )
        skip_checkov(self.access_logs, "CKV_AWS_18", ACCESS_LOGS_NOT_LOGGED)


@jsii.implements(s3.IBucketNotificationDestination)
class _QueueDestination:
    """aws_s3_notifications.SqsDestination, minus what cfn-lint flags or least privilege rules out: S3 may
    only SendMessage (from this bucket and account), the notification depends on the queue policy alone
    (the queue itself is already a GetAtt dependency), and the key allows S3 exactly what SQS SSE needs."""

    def __init__(self, queue: sqs.Queue, key: kms.Key) -> None:
        self.queue, self.key = queue, key

    def bind(self, scope: Construct, bucket: s3.IBucketRef) -> s3.BucketNotificationDestinationConfig:
        self.queue.add_to_resource_policy(
            iam.PolicyStatement(
                sid="InboundBucketNotifies",
                principals=[iam.ServicePrincipal("s3.amazonaws.com")],
                actions=["sqs:SendMessage"],
                resources=[self.queue.queue_arn],
                conditions={
                    "ArnLike": {"aws:SourceArn": bucket.bucket_ref.bucket_arn},
                    "StringEquals": {"aws:SourceAccount": Aws.ACCOUNT_ID},
                },
            )
        )
        self.key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="S3NotifiesEncryptedQueue",
                principals=[iam.ServicePrincipal("s3.amazonaws.com")],
                actions=["kms:GenerateDataKey", "kms:Decrypt"],
                resources=["*"],
            )
        )
        return s3.BucketNotificationDestinationConfig(
            arn=self.queue.queue_arn,
            type=s3.BucketNotificationDestinationType.QUEUE,
            dependencies=[self.queue.node.find_child("Policy")],
        )


def _deny_other_encryption(bucket: s3.Bucket, key: kms.IKey) -> None:
    """Refuse uploads that ask for another key or another kind of encryption: default encryption with the
    bucket's key applies when a request names none."""
    bucket.add_to_resource_policy(
        iam.PolicyStatement(
            sid="DenyOtherEncryption",
            effect=iam.Effect.DENY,
            principals=[iam.AnyPrincipal()],
            actions=["s3:PutObject"],
            resources=[bucket.arn_for_objects("*")],
            # Only when the request names an encryption: "...IfExists" would also deny a request naming none.
            conditions={
                "StringNotEquals": {"s3:x-amz-server-side-encryption": "aws:kms"},
                "Null": {"s3:x-amz-server-side-encryption": "false"},
            },
        )
    )
    bucket.add_to_resource_policy(
        iam.PolicyStatement(
            sid="DenyOtherKmsKey",
            effect=iam.Effect.DENY,
            principals=[iam.AnyPrincipal()],
            actions=["s3:PutObject"],
            resources=[bucket.arn_for_objects("*")],
            conditions={
                "StringNotEquals": {"s3:x-amz-server-side-encryption-aws-kms-key-id": key.key_arn},
                "Null": {"s3:x-amz-server-side-encryption-aws-kms-key-id": "false"},
            },
        )
    )
