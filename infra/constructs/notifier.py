"""The file-events queue (+ DLQ) the ingest function writes to, and the notify function that consumes it
and, on a daily schedule, sends authority digests; SES with a TLS-required configuration set, or GOV.UK
Notify with its API key in Secrets Manager."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from aws_cdk import CfnOutput, Duration, Stack
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_lambda_event_sources as sources
from aws_cdk import aws_secretsmanager as secretsmanager
from aws_cdk import aws_ses as ses
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from birthnotify.shared.names import SES_TEMPLATE_PARTS
from birthnotify.shared.settings import Env
from constructs import Construct

from infra.config import StageConfig
from infra.constructs.function import NO_VPC_WITH_MESH, PipelineFunction
from infra.constructs.held import Held
from infra.constructs.ingest import PIPELINE_KEY_ACTIONS, QUEUE_CONSUMER_ACTIONS, STATE_ACTIONS
from infra.constructs.keys import Keys, kms_via
from infra.constructs.layers import Layers
from infra.constructs.mesh import MeshSecret
from infra.constructs.queues import MAX_RETENTION, queue_with_dlq
from infra.constructs.storage import Storage
from infra.nag import acknowledge, acknowledge_packs

NOTIFY_BATCH_SIZE = 10
NOTIFY_MAX_CONCURRENCY = 2
NOTIFY_MAX_RECEIVES = 5


class FileEvents(Construct):
    """Created before the ingest function (which writes to it) and the notifier (which reads it)."""

    def __init__(self, scope: Construct, construct_id: str, *, config: StageConfig, keys: Keys) -> None:
        super().__init__(scope, construct_id)
        pair = queue_with_dlq(
            self,
            "Queue",
            config=config,
            name=config.names.file_events_queue,
            key=keys.pipeline,
            visibility_timeout=Duration.seconds(config.notify_timeout_seconds * 6),
            max_receive_count=NOTIFY_MAX_RECEIVES,
        )
        self.queue, self.dlq = pair.queue, pair.dlq


class Email(Construct):
    """What the notifier sends with: the SES identity and configuration set, and the Notify API key."""

    def report_delivery_problems_to(self, topic: sns.ITopic) -> None:
        """A bounce, complaint, rejection or long delay happens after SES accepted the email, so no retry
        can see it: SES tells the operators instead, through their alarm topic."""
        self.configuration_set.add_event_destination(
            "DeliveryProblems",
            configuration_set_event_destination_name="delivery-problems",
            destination=ses.EventDestination.sns_topic(topic),
            events=[
                ses.EmailSendingEvent.BOUNCE,
                ses.EmailSendingEvent.COMPLAINT,
                ses.EmailSendingEvent.REJECT,
                ses.EmailSendingEvent.RENDERING_FAILURE,
                ses.EmailSendingEvent.DELIVERY_DELAY,
            ],
        )

    def __init__(self, scope: Construct, construct_id: str, *, config: StageConfig, keys: Keys) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        self.configuration_set = ses.ConfigurationSet(
            self,
            "ConfigurationSet",
            configuration_set_name=f"{config.prefix}-email",
            tls_policy=ses.ConfigurationSetTlsPolicy.REQUIRE,
            reputation_metrics=True,
            sending_enabled=True,
        )
        identity_name = config.email_identity or config.email_sender
        identity = ses.Identity.email(identity_name) if "@" in identity_name else ses.Identity.domain(identity_name)
        self.identity = ses.EmailIdentity(self, "Identity", identity=identity, configuration_set=self.configuration_set)
        self.identity_arn = stack.format_arn(service="ses", resource="identity", resource_name=identity_name)
        self.configuration_set_arn = stack.format_arn(
            service="ses",
            resource="configuration-set",
            resource_name=self.configuration_set.configuration_set_name,
        )
        # The notifier's bulk sends fill in this template per recipient (subject, text and HTML whole).
        self.template = ses.CfnTemplate(
            self,
            "Template",
            template=ses.CfnTemplate.TemplateProperty(
                template_name=config.names.email_template,
                subject_part=SES_TEMPLATE_PARTS["SubjectPart"],
                text_part=SES_TEMPLATE_PARTS["TextPart"],
                html_part=SES_TEMPLATE_PARTS["HtmlPart"],
            ),
        )
        self.template_name = self.template.ref
        self.template_arn = stack.format_arn(
            service="ses", resource="template", resource_name=config.names.email_template
        )
        self.secret: secretsmanager.Secret | None = None
        if config.email_transport == "notify":
            self.secret = secretsmanager.Secret(
                self,
                "NotifyApiKey",
                secret_name=f"{config.prefix}/govuk-notify-api-key",
                description="GOV.UK Notify API key of the notifier: put the real key with "
                "'aws secretsmanager put-secret-value' after the first deployment",
                encryption_key=keys.ops,
                removal_policy=config.removal_policy,
            )
            acknowledge(
                self.secret,
                "AwsSolutions-SMG4",
                "GOV.UK Notify issues API keys in its own admin site and cannot be driven by a rotation "
                "Lambda; operators rotate the key there and put the new value (runbook in "
                "docs/infrastructure.md).",
            )
            acknowledge_packs(
                self.secret,
                "SecretsManagerRotationEnabled",
                "GOV.UK Notify issues API keys in its own admin site and cannot be driven by a "
                "rotation Lambda; operators rotate the key there and put the new value.",
            )

    @property
    def secret_id(self) -> str:
        return self.secret.secret_arn if self.secret else ""


class Notifier(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: StageConfig,
        keys: Keys,
        storage: Storage,
        layers: Layers,
        file_events: FileEvents,
        email: Email,
        mesh: MeshSecret,
        table: dynamodb.ITable,
        held: Held,
        environment: Callable[[Mapping[Env, str]], Mapping[str, str]],
    ) -> None:
        super().__init__(scope, construct_id)
        self.async_dlq = sqs.Queue(
            self,
            "AsyncDlq",
            queue_name=f"{config.prefix}-dlq-notify-async",
            encryption=sqs.QueueEncryption.KMS,
            encryption_master_key=keys.pipeline,
            data_key_reuse=Duration.hours(1),
            enforce_ssl=True,
            retention_period=MAX_RETENTION,
            removal_policy=config.removal_policy,
        )
        self.function = PipelineFunction(
            self,
            "Function",
            config=config,
            name="notify",
            layers=layers,
            environment=environment(
                {
                    Env.SES_CONFIGURATION_SET: email.configuration_set.configuration_set_name,
                    Env.SES_TEMPLATE: email.template_name,
                    Env.NOTIFY_API_KEY_SECRET_ID: email.secret_id,
                    Env.MESH_SECRET_ID: mesh.secret.secret_arn,
                }
            ),
            description="Tells authorities that records are waiting, trusts that files were processed (and "
            "sends MESH trusts their reports by MESH), and operators about held records (counts only)",
            memory_mb=config.notify_memory_mb,
            timeout=Duration.seconds(config.notify_timeout_seconds),
            log_key=keys.ops,
            environment_key=keys.ops,
            dead_letter_queue=self.async_dlq,
            vpc_reason=NO_VPC_WITH_MESH,
        )
        fn = self.function.function
        fn.add_event_source(
            sources.SqsEventSource(
                file_events.queue,
                batch_size=NOTIFY_BATCH_SIZE,
                report_batch_item_failures=True,
                max_concurrency=NOTIFY_MAX_CONCURRENCY,
            )
        )
        self.schedule = events.Rule(
            self,
            "DigestSchedule",
            rule_name=f"{config.prefix}-digest",
            description="Daily authority digests",
            schedule=events.Schedule.expression(config.digest_schedule),
            targets=[targets.LambdaFunction(fn, retry_attempts=2, max_event_age=Duration.hours(6))],
        )
        self._permissions(config, keys, storage, file_events, email, mesh, table)
        # The daily reminder of held records waiting too long: the open index only, which holds no personal data.
        self.function.policy.allow("CountHeldRecords", ["dynamodb:Query"], [held.index_arn])
        self.function.policy.allow(
            "UseHeldKey", ["kms:Decrypt"], [held.held_key.key_arn], conditions=kms_via("dynamodb")
        )
        CfnOutput(self, "SesConfigurationSet", value=email.configuration_set.configuration_set_name)

    def _permissions(
        self,
        config: StageConfig,
        keys: Keys,
        storage: Storage,
        file_events: FileEvents,
        email: Email,
        mesh: MeshSecret,
        table: dynamodb.ITable,
    ) -> None:
        policy = self.function.policy
        policy.allow("ConsumeFileEvents", QUEUE_CONSUMER_ACTIONS, [file_events.queue.queue_arn])
        policy.allow("AsyncFailuresToDlq", ["sqs:SendMessage"], [self.async_dlq.queue_arn])
        policy.allow(
            "UsePipelineKey",
            PIPELINE_KEY_ACTIONS,
            [keys.pipeline.key_arn],
            conditions=kms_via("sqs", "dynamodb"),
        )
        # The digest run reads the day's digest items of every authority with BatchGetItem (the local cloud,
        # enforcing IAM, showed the daily digest failing with AccessDenied without it).
        policy.allow("ReadWriteState", [*STATE_ACTIONS, "dynamodb:BatchGetItem"], [table.table_arn])
        policy.allow(
            "SendEmailAsSenderOnly",
            # One run's emails in one request: SendBulkTemplatedEmail is authorised against the sender's
            # identity, the configuration set and the stored template, and nothing else sends mail.
            ["ses:SendBulkTemplatedEmail"],
            [email.identity_arn, email.configuration_set_arn, email.template_arn],
            conditions={"StringEquals": {"ses:FromAddress": config.email_sender}},
        )
        secrets = [mesh.secret.secret_arn] + ([email.secret.secret_arn] if email.secret is not None else [])
        policy.allow("ReadSecrets", ["secretsmanager:GetSecretValue"], secrets)
        policy.allow("DecryptSecrets", ["kms:Decrypt"], [keys.ops.key_arn], conditions=kms_via("secretsmanager"))
        # A file that came by MESH gets its report (and rejected rows) sent back: read from the reports bucket.
        policy.allow(
            "ReadReportsForMesh",
            ["s3:GetObject"],
            [storage.reports_prefix_arn()],
            wildcard_reason="A report of any trust's file may go back by MESH; reading is confined to the "
            "reports/ prefix of the reports bucket.",
        )
        policy.allow("DecryptReports", ["kms:Decrypt"], [keys.reports.key_arn], conditions=kms_via("s3"))
