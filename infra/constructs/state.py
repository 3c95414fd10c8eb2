"""The state table: Powertools idempotency records and file checkpoints (birthnotify/progress.py).

Partition key ``id`` (string), items expire through the ``expiration`` TTL attribute, on-demand capacity,
encrypted with the pipeline key, point-in-time recovery on.
"""

from __future__ import annotations

from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_kms as kms
from constructs import Construct

from infra.config import StageConfig
from infra.nag import acknowledge_packs

PARTITION_KEY = "id"
TTL_ATTRIBUTE = "expiration"


class State(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, config: StageConfig, key: kms.IKey) -> None:
        super().__init__(scope, construct_id)
        self.table = dynamodb.Table(
            self,
            "Table",
            table_name=config.names.state_table,
            partition_key=dynamodb.Attribute(name=PARTITION_KEY, type=dynamodb.AttributeType.STRING),
            time_to_live_attribute=TTL_ATTRIBUTE,
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            encryption=dynamodb.TableEncryption.CUSTOMER_MANAGED,
            encryption_key=key,
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True
            ),
            deletion_protection=config.retain_data,
            removal_policy=config.removal_policy,
        )
        acknowledge_packs(
            self.table,
            "DynamoDBInBackupPlan",
            "The table holds only transient processing state (idempotency records and file "
            "checkpoints that expire after 35 days, no personal data); point-in-time recovery "
            "restores it to any second of the last 35 days, which is all of its useful life.",
        )
