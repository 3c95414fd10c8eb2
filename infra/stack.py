"""The birth-notifications system as a core stack and authority stacks, wired from the registry the
functions read.

The core stack holds everything shared (keys, buckets, state, layers, ingest, notify, MESH, trusts, the held
store, monitoring); its size does not depend on the number of authorities. Each authority stack holds the
authorities of one shard (infra.shards): queue, DLQ, key, consumer role, alarms. Nothing crosses between
them by CloudFormation reference (no exports, no imports): an authority stack names the ingest role and
the alarm topic by their predictable ARNs, and the ingest function finds each authority queue by name.
"""

from __future__ import annotations

from collections.abc import Mapping

from aws_cdk import Aws, CfnOutput, Stack
from birthnotify.domain.registry import Authority, Registry
from birthnotify.shared.settings import INGEST_ENV, MESH_ENV, NOTIFY_ENV, Env
from constructs import Construct

from infra.config import StageConfig
from infra.constructs.authorities import AuthorityQueues, authority_queues_arn_pattern
from infra.constructs.function import POWERTOOLS_NAMESPACE, environment_for
from infra.constructs.held import Held
from infra.constructs.ingest import Ingest
from infra.constructs.keys import Keys
from infra.constructs.layers import Layers
from infra.constructs.ledger import Ledger
from infra.constructs.mesh import MeshReceiver, MeshSecret
from infra.constructs.monitoring import INGEST_BACKLOG_HOURS, Alarms, Monitoring
from infra.constructs.notifier import Email, FileEvents, Notifier
from infra.constructs.state import State
from infra.constructs.storage import Storage
from infra.constructs.trusts import Trusts
from infra.shards import shard_range

PROJECT_TAGS = "birth-notifications"


class BirthNotificationsStack(Stack):
    """The core stack, ``BirthNotifications-<stage>``."""

    def __init__(
        self, scope: Construct, construct_id: str, *, config: StageConfig, registry: Registry, **kwargs
    ) -> None:
        super().__init__(
            scope,
            construct_id,
            stack_name=config.stack_name,
            description=f"Birth notifications from NHS trusts to local authorities ({config.stage})",
            # Stack tags (@aws-cdk/core:explicitStackTags): CloudFormation applies them to every resource at
            # deployment, and the template itself carries none.
            tags={"Project": PROJECT_TAGS, "Stage": config.stage},
            **kwargs,
        )
        self.config, self.registry = config, registry

        self.keys = Keys(self, "Keys", config=config)
        self.storage = Storage(
            self, "Storage", config=config, inbound_key=self.keys.inbound, reports_key=self.keys.reports
        )
        self.state = State(self, "State", config=config, key=self.keys.pipeline)
        self.layers = Layers(self, "Layers", config=config, registry=registry)
        # Construct id from the single-stack layout: the held reviewer role keeps its logical id.
        self.held = Held(self, "Authorities", config=config, held_key=self.keys.held)
        self.file_events = FileEvents(self, "FileEvents", config=config, keys=self.keys)
        self.email = Email(self, "Email", config=config, keys=self.keys)
        self.mesh_secret = MeshSecret(self, "MeshMailbox", config=config, keys=self.keys)
        self.ledger = Ledger(self, "Ledger", config=config, keys=self.keys, storage=self.storage)

        shared: dict[Env, str] = {
            Env.STAGE: config.stage,
            Env.REGISTRY_PATH: self.layers.registry_path,
            Env.INBOUND_BUCKET: self.storage.inbound.bucket_name,
            Env.REPORTS_BUCKET: self.storage.reports.bucket_name,
            Env.AUTHORITY_QUEUE_PREFIX: config.authority_queue_prefix,
            # The authority queues' URLs are built from their names (no GetQueueUrl per queue and container).
            Env.QUEUE_URL_BASE: f"https://sqs.{Aws.REGION}.{Aws.URL_SUFFIX}/{Aws.ACCOUNT_ID}/",
            Env.HELD_TABLE: self.held.table.table_name,
            Env.HELD_RETENTION_DAYS: str(config.held_retention_days),
            Env.HELD_MAX_AGE_HOURS: str(config.held_max_message_age_hours),
            Env.FILE_EVENTS_QUEUE_URL: self.file_events.queue.queue_url,
            Env.STATE_TABLE: self.state.table.table_name,
            Env.MAX_FILE_BYTES: str(config.max_file_bytes),
            Env.MAX_BABY_AGE_DAYS: str(config.max_baby_age_days),
            Env.LEDGER_BUCKET: self.ledger.bucket.bucket_name,
            Env.LEDGER_KEY_SECRET_ID: self.ledger.key_secret_name,
            Env.EMAIL_TRANSPORT: config.email_transport,
            Env.EMAIL_SENDER: config.email_sender,
            Env.CONSUMER_GUIDE_URL: config.consumer_guide_url,
            Env.NOTIFY_BASE_URL: config.notify_base_url,
            Env.NOTIFY_TEMPLATE_ID: config.notify_template_id,
            Env.MESH_SECRET_ID: self.mesh_secret.secret.secret_arn,
            Env.MESH_FILE_WORKFLOW_ID: config.mesh_file_workflow_id,
            Env.MESH_NEMS_WORKFLOW_ID: config.mesh_nems_workflow_id,
            Env.MESH_REPORT_WORKFLOW_ID: config.mesh_report_workflow_id,
            Env.MESH_MAX_MESSAGES: str(config.mesh_max_messages),
        }

        def notify_environment(extra: Mapping[Env, str]) -> Mapping[str, str]:
            return environment_for("notify", NOTIFY_ENV, {**shared, **extra})

        self.ingest = Ingest(
            self,
            "Ingest",
            config=config,
            keys=self.keys,
            storage=self.storage,
            layers=self.layers,
            held=self.held,
            file_events=self.file_events.queue,
            table=self.state.table,
            environment=environment_for("ingest", INGEST_ENV, shared),
        )
        self.ledger.grant_write(self.ingest.function.policy)
        self.notifier = Notifier(
            self,
            "Notifier",
            config=config,
            keys=self.keys,
            storage=self.storage,
            layers=self.layers,
            file_events=self.file_events,
            email=self.email,
            mesh=self.mesh_secret,
            table=self.state.table,
            held=self.held,
            environment=notify_environment,
        )
        self.mesh = MeshReceiver(
            self,
            "Mesh",
            config=config,
            keys=self.keys,
            storage=self.storage,
            layers=self.layers,
            secret=self.mesh_secret,
            file_events=self.file_events.queue,
            table=self.state.table,
            environment=environment_for("mesh", MESH_ENV, shared),
        )
        self.trusts = Trusts(self, "Trusts", config=config, registry=registry, storage=self.storage, keys=self.keys)
        self.held.allow_release_and_redelivery(
            authority_queues_arn=authority_queues_arn_pattern(self, config),
            file_events=self.file_events.queue,
            keys=self.keys,
            storage=self.storage,
            state_table=self.state.table,
            stack_arn=self.format_arn(
                service="cloudformation", resource="stack", resource_name=f"{config.stack_name}/*"
            ),
        )
        reviewer_policy = getattr(self.held, "reviewer_policy", None)
        if reviewer_policy is not None:  # its releases, discards and re-deliveries are in the sharing ledger
            self.ledger.grant_action_entries(reviewer_policy)
        self.monitoring = self._monitoring()
        self._outputs()

    def _monitoring(self) -> Monitoring:
        config = self.config
        monitoring = Monitoring(self, "Monitoring", config=config, registry=self.registry, key=self.keys.ops)
        self.email.report_delivery_problems_to(monitoring.topic)
        dlqs = [
            ("ingest", self.ingest.dlq),
            ("file-events", self.file_events.dlq),
            ("notify-async", self.notifier.async_dlq),
        ]
        monitoring.dead_letter_queues(dlqs)
        monitoring.function_errors("ingest", self.ingest.function.function)
        monitoring.function_errors("notify", self.notifier.function.function)
        monitoring.function_errors("mesh", self.mesh.function.function)
        monitoring.mesh_quarantined(self.mesh.function.function_name, POWERTOOLS_NAMESPACE)
        monitoring.unprocessable_rows(self.ingest.function.function_name, POWERTOOLS_NAMESPACE)
        monitoring.oldest_message(
            "ingest",
            self.ingest.queue,
            INGEST_BACKLOG_HOURS,
            "Uploaded files have waited over an hour to be ingested.",
        )
        return monitoring

    def _outputs(self) -> None:
        for name, value in {
            "InboundBucketName": self.storage.inbound.bucket_name,
            "ReportsBucketName": self.storage.reports.bucket_name,
            "AccessLogBucketName": self.storage.access_logs.bucket_name,
            "IngestQueueUrl": self.ingest.queue.queue_url,
            "FileEventsQueueUrl": self.file_events.queue.queue_url,
            "HeldTableName": self.held.table.table_name,
            "StateTableName": self.state.table.table_name,
            "LedgerBucketName": self.ledger.bucket.bucket_name,
            "LedgerKeySecretId": self.ledger.key_secret_name,
            "LedgerGlueTable": f"{self.ledger.database_name}.{self.ledger.table_name}",
            "AuthorityQueuePrefix": self.config.authority_queue_prefix,
            "IngestFunctionName": self.ingest.function.function.function_name,
            "NotifyFunctionName": self.notifier.function.function.function_name,
            "MeshFunctionName": self.mesh.function.function.function_name,
            "MeshSecretName": self.config.mesh_secret,
        }.items():
            CfnOutput(self, name, value=value)


class AuthorityStack(Stack):
    """``BirthNotifications-<stage>-Authorities-<shard>``: the authorities of one shard (infra.shards), each
    with its queue, DLQ, key, consumer role and alarms. Deployed after the core stack, whose ingest role each
    key policy names (KMS refuses a key policy naming a role that does not exist yet)."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: StageConfig,
        shard: str,
        authorities: list[Authority],
        core: BirthNotificationsStack,
        **kwargs,
    ) -> None:
        first, last = shard_range(shard)
        super().__init__(
            scope,
            construct_id,
            stack_name=config.authority_stack_name(shard),
            description=f"Birth notifications ({config.stage}): authority queues {first}-{last}",
            tags={"Project": PROJECT_TAGS, "Stage": config.stage},
            **kwargs,
        )
        self.config, self.shard = config, shard
        self.add_stack_dependency(core, "key policies name the core stack's ingest role, which must exist first")
        # Construct ids from the single-stack layout: each authority's resources keep their logical ids.
        self.authorities = AuthorityQueues(
            self,
            "Authorities",
            config=config,
            authorities=authorities,
            # The held reviewer role releases held records and re-delivers: it encrypts for the councils too.
            sender_role_names=[config.function_role_name("ingest")]
            + ([config.held_reviewer_role_name] if config.held_reviewer_principals else []),
        )
        alarms = Alarms.to_operators(self, "Monitoring", config=config)
        alarms.dead_letter_queues(
            (f"authority-{gss}", resources.dlq) for gss, resources in self.authorities.by_gss.items()
        )
        for gss, resources in self.authorities.by_gss.items():
            alarms.oldest_message(
                f"authority-{gss}",
                resources.queue,
                config.authority_max_message_age_days * 24,
                f"{resources.authority.name} ({gss}) has not consumed its queue for "
                f"{config.authority_max_message_age_days} days: SQS deletes its records after 14. Contact "
                f"{', '.join(resources.authority.contact_emails)} to run birthnotify consume. If records were lost "
                f"(a purge, 14 days, a broken consumer), re-send them from the files still kept: birthnotify "
                f"redeliver --stage {config.stage} --authority {gss} --since YYYY-MM-DD (as the held reviewer role).",
            )
