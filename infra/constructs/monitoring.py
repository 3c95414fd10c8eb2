"""Alarms that page the operators (the registry's operator_emails) through a KMS-encrypted SNS topic:
any dead-letter queue not empty, function errors, an authority that stopped consuming, held records
nobody reviews, and an ingest backlog. The topic is in the core stack; each authority stack's alarms reach
it by its name."""

from __future__ import annotations

from collections.abc import Iterable

from aws_cdk import CfnOutput, Duration, Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as actions
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from aws_cdk import aws_sqs as sqs
from birthnotify.domain.registry import Registry
from constructs import Construct

from infra.config import StageConfig

PERIOD = Duration.minutes(5)
INGEST_BACKLOG_HOURS = 1


class Alarms(Construct):
    """Alarms that notify ``topic`` (the operators' topic) when they fire and when they clear."""

    topic: sns.ITopic

    def __init__(self, scope: Construct, construct_id: str, *, config: StageConfig) -> None:
        super().__init__(scope, construct_id)
        self.config = config
        self.alarms: list[cloudwatch.Alarm] = []

    @classmethod
    def to_operators(cls, scope: Construct, construct_id: str, *, config: StageConfig) -> Alarms:
        """In an authority stack: alarms to the core stack's topic, named by its predictable ARN (no export)."""
        alarms = cls(scope, construct_id, config=config)
        arn = Stack.of(scope).format_arn(service="sns", resource=config.alarm_topic_name)
        alarms.topic = sns.Topic.from_topic_arn(alarms, "OperatorsTopic", arn)
        return alarms

    def _alarm(
        self, construct_id: str, *, name: str, description: str, metric: cloudwatch.IMetric, threshold: float
    ) -> cloudwatch.Alarm:
        alarm = cloudwatch.Alarm(
            self,
            construct_id,
            alarm_name=f"{self.config.prefix}-{name}",
            alarm_description=description,
            metric=metric,
            threshold=threshold,
            evaluation_periods=1,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
        alarm.add_alarm_action(actions.SnsAction(self.topic))
        alarm.add_ok_action(actions.SnsAction(self.topic))
        self.alarms.append(alarm)
        return alarm

    def dead_letter_queues(self, queues: Iterable[tuple[str, sqs.IQueue]]) -> None:
        for name, queue in queues:
            self._alarm(
                f"Dlq{_id(name)}",
                name=f"dlq-{name}",
                description=f"Messages are waiting in the {name} dead-letter queue: they failed repeatedly. "
                "Find the cause in the logs, fix it, then redrive the messages.",
                metric=queue.metric_approximate_number_of_messages_visible(period=PERIOD, statistic="Maximum"),
                threshold=0,
            )

    def function_errors(self, name: str, function: lambda_.IFunction) -> None:
        self._alarm(
            f"Errors{_id(name)}",
            name=f"errors-{name}",
            description=f"The {name} function reported errors (see its log group).",
            metric=function.metric_errors(period=PERIOD, statistic="Sum"),
            threshold=0,
        )

    def oldest_message(self, name: str, queue: sqs.IQueue, hours: int, description: str) -> None:
        self._alarm(
            f"Age{_id(name)}",
            name=f"age-{name}",
            description=description,
            metric=queue.metric_approximate_age_of_oldest_message(period=PERIOD, statistic="Maximum"),
            threshold=hours * 3600,
        )


class Monitoring(Alarms):
    """The operators' KMS-encrypted topic, with an email subscription per registry operator, and the core
    stack's alarms."""

    def __init__(
        self, scope: Construct, construct_id: str, *, config: StageConfig, registry: Registry, key: kms.IKey
    ) -> None:
        super().__init__(scope, construct_id, config=config)
        self.topic = sns.Topic(
            self,
            "Alarms",
            topic_name=config.alarm_topic_name,
            display_name="Birth notifications alarms",
            master_key=key,
            enforce_ssl=True,
        )
        for email in registry.operator_emails:
            self.topic.add_subscription(subscriptions.EmailSubscription(email))
        CfnOutput(self, "AlarmTopicArn", value=self.topic.topic_arn)

    def mesh_quarantined(self, function_name: str, namespace: str) -> None:
        """MESH messages the mesh function set aside (an unknown sender, an unreadable name, a MESH report):
        each is also emailed to the operators with its message id."""
        self._alarm(
            "MeshQuarantined",
            name="mesh-quarantined",
            description="The mesh function quarantined MESH messages: they were not passed to the pipeline. Each "
            "is in the operators' email 'MESH message quarantined: <id>' and at quarantine/mesh-<id> in the "
            "inbound bucket; the email says what to do.",
            metric=_function_count(namespace, "MeshMessagesQuarantined", function_name),
            threshold=0,
        )

    def unprocessable_rows(self, function_name: str, namespace: str) -> None:
        """Rows the ingest function could not process because of a fault of its own (ROW_UNPROCESSABLE):
        the trust was told to send them again once the fault is fixed."""
        self._alarm(
            "RowsUnprocessable",
            name="rows-unprocessable",
            description="The ingest function could not process some rows because of a fault in the service (not "
            "in the trust's data): they were rejected as ROW_UNPROCESSABLE. Find 'row failed unexpectedly' in its "
            "log group (row numbers and notification ids only), fix the cause, and tell the trust to resend them.",
            metric=_function_count(namespace, "RowsUnprocessable", function_name),
            threshold=0,
        )


def _function_count(namespace: str, metric_name: str, function_name: str) -> cloudwatch.Metric:
    """A count one function publishes with Powertools (its ``service`` dimension), summed per period."""
    return cloudwatch.Metric(
        namespace=namespace,
        metric_name=metric_name,
        dimensions_map={"service": function_name},
        period=PERIOD,
        statistic="Sum",
    )


def _id(name: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in name.replace("_", "-").split("-"))
