"""MESH: the secret that holds the service's mailbox, endpoint and credentials, and the scheduled mesh
function that moves messages from that mailbox into the inbound bucket (or quarantine), with what it may
touch: write mesh-<id> objects under inbound/<ODS>/ and quarantine/, take the run lease in the state table,
tell the notifier of a quarantined message, read the secret. Nothing more."""

from __future__ import annotations

from collections.abc import Mapping

from aws_cdk import Duration
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_secretsmanager as secretsmanager
from aws_cdk import aws_sqs as sqs
from birthnotify.shared.names import (
    INBOUND_PREFIX,
    MESH_KEY_PREFIX,
    MESH_RUN_LEASE,
    QUARANTINE_PREFIX,
    lease_item_id,
)
from constructs import Construct

from infra.config import StageConfig
from infra.constructs.function import NO_VPC_WITH_MESH, PipelineFunction
from infra.constructs.ingest import PIPELINE_KEY_ACTIONS
from infra.constructs.keys import Keys, kms_via
from infra.constructs.layers import Layers
from infra.constructs.storage import Storage
from infra.nag import acknowledge, acknowledge_packs, skip_checkov

NOT_ROTATED_BY_LAMBDA = (
    "The MESH mailbox password, shared key and client certificate are issued by NHS England (the MESH "
    "service desk and its PKI), not by anything a rotation Lambda can drive: DevOps put each new value when NHS "
    "England issues it (README, MESH), and the functions read it within a minute."
)
ONE_RUN_AT_A_TIME = (
    "Runs never overlap without it: each run of the mesh function first takes a lease in the state table and "
    "a run that finds it held ends at once. Reserved concurrency would take from the account pool (and fails "
    "in accounts on the default quota), and Lambda would keep retrying the throttled schedule for hours."
)
NO_DLQ_FOR_THE_SCHEDULE = (
    "Invoked every minute by its schedule with no payload worth keeping: a failed run is not retried, the "
    "next minute's run is the retry (messages stay in the MESH inbox until stored), and every failure counts "
    "in the function's errors alarm. A dead-letter queue would only collect copies of the schedule's event."
)


class MeshSecret(Construct):
    """Created before the functions that read it (mesh, notify). CloudFormation gives a secret a generated
    value; the functions refuse it as unset until DevOps put the JSON value (README, MESH)."""

    def __init__(self, scope: Construct, construct_id: str, *, config: StageConfig, keys: Keys) -> None:
        super().__init__(scope, construct_id)
        self.secret = secretsmanager.Secret(
            self,
            "Secret",
            secret_name=config.mesh_secret,
            description="The service's MESH mailbox: JSON with url, mailbox, password, shared_key, client_cert, "
            "client_key, ca_cert. Put it with 'aws secretsmanager put-secret-value' (README, MESH)",
            encryption_key=keys.ops,
            removal_policy=config.removal_policy,
        )
        acknowledge(self.secret, "AwsSolutions-SMG4", NOT_ROTATED_BY_LAMBDA)
        acknowledge_packs(self.secret, "SecretsManagerRotationEnabled", NOT_ROTATED_BY_LAMBDA)


class MeshReceiver(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: StageConfig,
        keys: Keys,
        storage: Storage,
        layers: Layers,
        secret: MeshSecret,
        file_events: sqs.IQueue,
        table: dynamodb.ITable,
        environment: Mapping[str, str],
    ) -> None:
        super().__init__(scope, construct_id)
        self.function = PipelineFunction(
            self,
            "Function",
            config=config,
            name="mesh",
            layers=layers,
            environment=environment,
            description="Moves trusts' files from the service's MESH mailbox to the inbound bucket (unknown "
            "senders and unreadable names to quarantine), acknowledging each once stored",
            memory_mb=config.mesh_memory_mb,
            timeout=Duration.seconds(config.mesh_timeout_seconds),
            log_key=keys.ops,
            environment_key=keys.ops,
            concurrency_reason=ONE_RUN_AT_A_TIME,
            vpc_reason=NO_VPC_WITH_MESH,
        )
        fn = self.function.function
        # The next scheduled run is the retry: none from Lambda's asynchronous queue, and an event that waited a
        # minute (behind a long run) is dropped rather than run late.
        fn.configure_async_invoke(retry_attempts=0, max_event_age=Duration.minutes(1))
        self.schedule = events.Rule(
            self,
            "Schedule",
            rule_name=f"{config.prefix}-mesh",
            description="Receive trusts' files from the service's MESH mailbox",
            schedule=events.Schedule.expression(config.mesh_schedule),
            targets=[targets.LambdaFunction(fn, retry_attempts=0, max_event_age=Duration.minutes(1))],
        )
        acknowledge_packs(fn, "LambdaDLQ", NO_DLQ_FOR_THE_SCHEDULE)
        skip_checkov(fn, "CKV_AWS_116", NO_DLQ_FOR_THE_SCHEDULE)
        self._permissions(keys, storage, secret, file_events, table)

    def _permissions(
        self, keys: Keys, storage: Storage, secret: MeshSecret, file_events: sqs.IQueue, table: dynamodb.ITable
    ) -> None:
        policy = self.function.policy
        objects = [
            storage.inbound.arn_for_objects(f"{INBOUND_PREFIX}*/{MESH_KEY_PREFIX}*"),
            storage.inbound.arn_for_objects(f"{QUARANTINE_PREFIX}{MESH_KEY_PREFIX}*"),
        ]
        where = (
            f"Objects are named by MESH message ids, not known in advance: confined to "
            f"{INBOUND_PREFIX}<ODS>/{MESH_KEY_PREFIX}<id> and {QUARANTINE_PREFIX}{MESH_KEY_PREFIX}<id> of the "
            "inbound bucket."
        )
        policy.allow("StoreMessages", ["s3:PutObject", "s3:AbortMultipartUpload"], objects, wildcard_reason=where)
        # HeadObject (is a message already stored?) is authorised as GetObject.
        policy.allow("SeeStoredMessages", ["s3:GetObject"], objects, wildcard_reason=where)
        # A multipart upload to a KMS-encrypted bucket needs Decrypt as well as GenerateDataKey.
        policy.allow(
            "EncryptInbound", ["kms:GenerateDataKey", "kms:Decrypt"], [keys.inbound.key_arn], conditions=kms_via("s3")
        )
        # Only its own lease item: the table also holds ingest's idempotency and progress records.
        own_lease = {"ForAllValues:StringEquals": {"dynamodb:LeadingKeys": [lease_item_id(MESH_RUN_LEASE)]}}
        policy.allow(
            "TakeRunLease", ["dynamodb:PutItem", "dynamodb:DeleteItem"], [table.table_arn], conditions=own_lease
        )
        policy.allow("SendQuarantineNotices", ["sqs:SendMessage"], [file_events.queue_arn])
        policy.allow(
            "UsePipelineKey", PIPELINE_KEY_ACTIONS, [keys.pipeline.key_arn], conditions=kms_via("sqs", "dynamodb")
        )
        policy.allow("ReadMeshSecret", ["secretsmanager:GetSecretValue"], [secret.secret.secret_arn])
        policy.allow("DecryptMeshSecret", ["kms:Decrypt"], [keys.ops.key_arn], conditions=kms_via("secretsmanager"))
