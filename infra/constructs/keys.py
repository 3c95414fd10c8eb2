"""Customer-managed KMS keys, one per trust boundary.

- inbound: the trusts' uploads. Only the inbound bucket uses it, because S3 cannot notify a queue whose
  key policy depends on the bucket that uses the same key (a circular dependency).
- reports: the reports bucket (trusts read their own reports).
- pipeline: the ingest and file-events queues, their dead-letter queues and the state table.
- held: the held queue, which carries whole records for review.
- ledger: the sharing ledger bucket and its HMAC key's secret (ledger.py).
- ops: log groups, the operators' alarm topic, the GOV.UK Notify API key secret and the functions'
  environment variables.
- one per authority (authorities.py, in its authority stack): its queue and dead-letter queue, usable only
  by it and ingest.

Every key rotates yearly and is retained when the stack is deleted unless the stage is disposable.
"""

from __future__ import annotations

from aws_cdk import ArnFormat, Aws, Duration, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from constructs import Construct

from infra.config import StageConfig


def kms_via(*services: str) -> dict:
    """Condition: the key is used only through these services on the caller's behalf."""
    names = [f"{service}.{Aws.REGION}.amazonaws.com" for service in services]
    return {"StringEquals": {"kms:ViaService": names[0] if len(names) == 1 else names}}


def customer_key(scope: Construct, construct_id: str, config: StageConfig, purpose: str, description: str) -> kms.Key:
    return kms.Key(
        scope,
        construct_id,
        alias=f"alias/{config.prefix}/{purpose}",
        description=f"{config.stack_name}: {description}",
        enable_key_rotation=True,
        rotation_period=Duration.days(365),
        pending_window=Duration.days(30),
        removal_policy=config.removal_policy,
    )


class Keys(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, config: StageConfig) -> None:
        super().__init__(scope, construct_id)
        self.inbound = customer_key(self, "Inbound", config, "inbound", "trusts' uploads (inbound bucket)")
        self.reports = customer_key(self, "Reports", config, "reports", "file reports (reports bucket)")
        self.pipeline = customer_key(
            self, "Pipeline", config, "pipeline", "ingest and file-events queues, their DLQs, state table"
        )
        self.held = customer_key(self, "Held", config, "held", "held-for-review queue")
        self.ledger = customer_key(self, "Ledger", config, "ledger", "sharing ledger bucket and its HMAC key")
        self.ops = customer_key(
            self, "Ops", config, "ops", "log groups, alarm topic, notifier secret, function environments"
        )
        self._allow_cloudwatch_logs(config)
        self._allow_topic_publishers()

    def _allow_cloudwatch_logs(self, config: StageConfig) -> None:
        """CloudWatch Logs encrypts this stack's log groups (only those, by encryption context)."""
        stack = Stack.of(self)
        log_groups = stack.format_arn(
            service="logs",
            resource="log-group",
            resource_name=f"/aws/lambda/{config.prefix}-*",
            arn_format=ArnFormat.COLON_RESOURCE_NAME,
        )
        self.ops.add_to_resource_policy(
            iam.PolicyStatement(
                sid="CloudWatchLogsEncryptsThisStacksLogGroups",
                principals=[iam.ServicePrincipal(f"logs.{Aws.REGION}.amazonaws.com")],
                actions=[
                    "kms:Encrypt",
                    "kms:Decrypt",
                    "kms:ReEncryptFrom",
                    "kms:ReEncryptTo",
                    "kms:GenerateDataKey",
                    "kms:GenerateDataKeyWithoutPlaintext",
                    "kms:DescribeKey",
                ],
                resources=["*"],
                conditions={"ArnLike": {"kms:EncryptionContext:aws:logs:arn": log_groups}},
            )
        )

    def _allow_topic_publishers(self) -> None:
        """CloudWatch alarms and SES delivery events (bounces, complaints) publish to the KMS-encrypted
        operators' topic."""
        for sid, service in (
            ("CloudWatchAlarmsPublishToEncryptedTopic", "cloudwatch.amazonaws.com"),
            ("SesPublishesDeliveryProblemsToEncryptedTopic", "ses.amazonaws.com"),
        ):
            self.ops.add_to_resource_policy(
                iam.PolicyStatement(
                    sid=sid,
                    principals=[iam.ServicePrincipal(service)],
                    actions=["kms:Decrypt", "kms:GenerateDataKey"],
                    resources=["*"],
                    conditions={"StringEquals": {"aws:SourceAccount": Aws.ACCOUNT_ID}},
                )
            )
