"""The held store, where records wait for a person to find their council or agreement (in the core stack),
and the held reviewer role.

A DynamoDB table (``birthnotify-<stage>-held``) encrypted with the held key: one item per held record, kept
until a reviewer releases or discards it (``birthnotify held ...``), whatever SQS's 14-day retention and however long
that takes (an open record has no expiry); a record acted on, and the action, expire ``held_retention_days``
after the action (TTL). Why DynamoDB rather than S3:
ingest writes 25 held records to a request (S3 has no batch write); releasing and discarding are conditional
writes, so two reviewers never act on one record twice and a release never races a discard; the sparse
``open`` index lists the open records by reason and age without reading any personal data, which is all the
age check may read; point-in-time recovery and deletion protection come with it.
"""

from __future__ import annotations

from aws_cdk import CfnOutput
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sqs as sqs
from birthnotify.shared.names import (
    HELD_AT_ATTRIBUTE,
    HELD_INDEX_PROJECTION,
    HELD_OPEN_ATTRIBUTE,
    HELD_OPEN_INDEX,
    HELD_TTL_ATTRIBUTE,
)
from constructs import Construct

from infra.config import StageConfig
from infra.constructs.keys import Keys, kms_via
from infra.constructs.policy import assumable_role
from infra.constructs.storage import Storage
from infra.nag import acknowledge_packs

TABLE_KEY_ACTIONS = ["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey", "kms:DescribeKey"]
"""What a caller of a table encrypted with a customer-managed key needs on the key, through DynamoDB."""
REVIEW_ACTIONS = [
    "dynamodb:Query",
    "dynamodb:GetItem",
    "dynamodb:BatchGetItem",
    "dynamodb:UpdateItem",
    "dynamodb:PutItem",
    "dynamodb:Scan",
]


class Held(Construct):
    """The held store and, with ``held_reviewer_principals``, the reviewer role. Under the construct id
    ``Authorities`` (which held every authority when the app was one stack), so that the reviewer role keeps
    its logical id: a named role whose logical id changed could not be replaced."""

    def __init__(self, scope: Construct, construct_id: str, *, config: StageConfig, held_key: kms.IKey) -> None:
        super().__init__(scope, construct_id)
        self.held_key = held_key
        self.table = dynamodb.Table(
            self,
            "HeldStore",
            table_name=config.names.held_table,
            partition_key=dynamodb.Attribute(name="id", type=dynamodb.AttributeType.STRING),
            time_to_live_attribute=HELD_TTL_ATTRIBUTE,
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            encryption=dynamodb.TableEncryption.CUSTOMER_MANAGED,
            encryption_key=held_key,
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True
            ),
            deletion_protection=config.retain_data,
            removal_policy=config.removal_policy,
        )
        self.table.add_global_secondary_index(
            index_name=HELD_OPEN_INDEX,
            partition_key=dynamodb.Attribute(name=HELD_OPEN_ATTRIBUTE, type=dynamodb.AttributeType.STRING),
            sort_key=dynamodb.Attribute(name=HELD_AT_ATTRIBUTE, type=dynamodb.AttributeType.STRING),
            projection_type=dynamodb.ProjectionType.INCLUDE,
            non_key_attributes=list(HELD_INDEX_PROJECTION),
        )
        acknowledge_packs(
            self.table,
            "DynamoDBInBackupPlan",
            "Point-in-time recovery restores the held store to any second of the last 35 days, deletion "
            "protection and a retain policy keep it when the stack goes, and every held record is also in its "
            "trust's raw upload and report; a backup plan would add a second copy of personal data to govern.",
        )
        self.index_arn = f"{self.table.table_arn}/index/{HELD_OPEN_INDEX}"
        self.reviewer_role = self._reviewer(config) if config.held_reviewer_principals else None

    def allow_write(self, policy, sid: str = "WriteHeldStore") -> None:  # noqa: ANN001 (LeastPrivilegePolicy)
        """Store new held records: ingest."""
        policy.allow(sid, ["dynamodb:BatchWriteItem", "dynamodb:PutItem"], [self.table.table_arn])
        policy.allow("UseHeldKey", TABLE_KEY_ACTIONS, [self.held_key.key_arn], conditions=kms_via("dynamodb"))

    def allow_release_and_redelivery(
        self,
        *,
        authority_queues_arn: str,
        file_events: sqs.IQueue,
        keys: Keys,
        storage: Storage,
        state_table: dynamodb.ITable,
        stack_arn: str,
    ) -> None:
        """The reviewer role's sends: released and re-delivered records to the authority queues (whose keys
        name the role in their key policies), each action's event to the notify function; and what
        re-delivery reads: the reports, the uploads they name, each file's processing day, the stack's
        outputs (the buckets' names)."""
        policy = getattr(self, "reviewer_policy", None)
        if policy is None:
            return
        policy.allow("SendToAuthorityQueues", ["sqs:SendMessage", "sqs:GetQueueUrl"], [authority_queues_arn])
        policy.allow("SendFileEvents", ["sqs:SendMessage", "sqs:GetQueueUrl"], [file_events.queue_arn])
        policy.allow(
            "UsePipelineKey",
            ["kms:GenerateDataKey", "kms:Decrypt"],
            [keys.pipeline.key_arn],
            conditions=kms_via("sqs", "dynamodb"),
        )
        policy.allow("ReadProgress", ["dynamodb:GetItem"], [state_table.table_arn])
        policy.allow(
            "ListReportsAndUploads",
            ["s3:ListBucket", "s3:ListBucketVersions"],
            [storage.inbound.bucket_arn, storage.reports.bucket_arn],
        )
        policy.allow(
            "ReadReportsAndUploads",
            ["s3:GetObject", "s3:GetObjectVersion"],
            [storage.inbound_prefix_arn(), storage.reports_prefix_arn()],
            wildcard_reason="Re-delivery reads the reports of any trust's files and the uploads they name, not "
            "known in advance; confined to the reports and uploads prefixes.",
        )
        policy.allow(
            "DecryptReportsAndUploads",
            ["kms:Decrypt"],
            [keys.inbound.key_arn, keys.reports.key_arn],
            conditions=kms_via("s3"),
        )
        policy.allow(
            "ReadStackOutputs",
            ["cloudformation:DescribeStacks"],
            [stack_arn],
            wildcard_reason="A stack's ARN ends in an id CloudFormation makes at creation; the name "
            "confines it to this stage's core stack.",
        )

    def _reviewer(self, config: StageConfig) -> iam.Role:
        role, policy = assumable_role(
            self,
            role_id="HeldReviewerRole",
            policy_id="HeldReviewerPolicy",
            name=config.held_reviewer_role_name,
            description="Operators review held records: list, release to a council, discard",
            principals=config.held_reviewer_principals,
            policy_description="The held store and its key, and sending released records",
        )
        self.reviewer_policy = policy
        policy.allow("ReviewHeldStore", REVIEW_ACTIONS, [self.table.table_arn, self.index_arn])
        policy.allow("UseHeldKey", TABLE_KEY_ACTIONS, [self.held_key.key_arn], conditions=kms_via("dynamodb"))
        CfnOutput(self, "HeldReviewerRoleArn", value=role.role_arn)
        return role
