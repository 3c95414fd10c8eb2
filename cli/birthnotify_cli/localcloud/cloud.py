"""The whole system on one machine: an embedded moto server, the CDK app's synthesized template deployed
into it through moto's CloudFormation, and a local runtime in place of Lambda's event source mappings.

No AWS account, no Docker, no network: everything listens on 127.0.0.1.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
import sys
import time
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager, redirect_stdout
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

from birthnotify_cli.lambda_shim import LambdaContext, invoke_with_sqs_batch, load_handler_module
from birthnotify_cli.localcloud.template import (
    ACCOUNT,
    APPLIED_BY_HAND,
    REGION,
    AdaptedTemplate,
    Resolver,
    adapt,
    policy_json,
)

ROOT = Path(__file__).resolve().parents[3]
STAGE = "local"
STACK_NAME = f"BirthNotifications-{STAGE}"
SOURCES = ("infra", "functions", "layers/domain", "layers/dependencies", "config", "cdk.json")
FAKE_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local", "AWS_SESSION_TOKEN": "local",
                    "AWS_DEFAULT_REGION": REGION, "AWS_REGION": REGION}
RETRY_DELAY_SECONDS = 1
"""A failed message becomes visible again after this (Lambda waits the queue's visibility timeout)."""

Progress = Callable[[str], None]


@dataclass
class DeployReport:
    """What was deployed through moto's CloudFormation, and what had to be done another way, and why."""

    created: int = 0
    applied: list[str] = field(default_factory=list)
    local_runtime: list[str] = field(default_factory=list)
    not_emulated: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        return [f"{self.created} resources created by moto's CloudFormation from the synthesized template",
                *(f"applied by hand: {item}" for item in self.applied),
                *(f"local runtime: {item}" for item in self.local_runtime),
                *(f"not emulated: {item}" for item in self.not_emulated)]


@dataclass
class Function:
    """A Lambda function as the template defines it, run in this process."""

    name: str
    code_dir: Path
    handler: str
    environment: dict[str, str]
    timeout_seconds: int
    log: Any = None
    """Where the function's stdout (its structured logs and EMF metrics) goes, as CloudWatch Logs would."""
    module: Any = None

    def invoke(self, event: Any, messages: list[dict] | None = None, queue_arn: str = "") -> dict:
        with _environment(self.environment), redirect_stdout(self.log or sys.stdout):
            if self.module is None:
                file_name, _, _ = self.handler.rpartition(".")
                self.module = load_handler_module(self.code_dir / f"{file_name}.py", f"local_{self.name}")
            handler = getattr(self.module, self.handler.rpartition(".")[2])
            context = LambdaContext(function_name=self.name, timeout_seconds=self.timeout_seconds)
            if messages is not None:
                return invoke_with_sqs_batch(handler, messages, queue_arn, context)
            return handler(event, context)


@dataclass
class Mapping:
    """An SQS event source mapping: the runtime polls ``queue_url`` and invokes ``function``."""

    function: Function
    queue_url: str
    queue_arn: str
    batch_size: int
    partial_failures: bool


@dataclass
class RunStats:
    invocations: int = 0
    messages: int = 0
    failed: int = 0


class LocalCloud:
    """Start with ``LocalCloud.start()``; ``run_until_idle()`` plays Lambda until every queue is drained."""

    def __init__(self, server: Any, endpoint_url: str, workdir: Path) -> None:
        self.server = server
        self.endpoint_url = endpoint_url
        self.workdir = workdir
        self.report = DeployReport()
        self.outputs: dict[str, str] = {}
        self.physical: dict[str, str] = {}
        self.functions: dict[str, Function] = {}
        self.mappings: list[Mapping] = []
        self.schedules: list[Function] = []
        self._saved_environ: dict[str, str | None] = {}

    # -- lifecycle -----------------------------------------------------------------------------------

    @classmethod
    def start(cls, workdir: Path = ROOT / "build" / "localcloud", port: int = 0,
              progress: Progress | None = None) -> LocalCloud:
        """Synthesize (cached), start moto on 127.0.0.1 and deploy the template into it."""
        say = progress or (lambda message: None)
        workdir.mkdir(parents=True, exist_ok=True)
        say("synthesizing the CDK app (cached after the first run) ...")
        template_path = synthesized_template(workdir)
        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request
        port = port or _free_port()
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        server.start()
        cloud = cls(server, f"http://127.0.0.1:{port}", workdir)
        cloud._use_local_endpoint()
        say(f"moto listening on {cloud.endpoint_url}; deploying {template_path.name} ...")
        cloud.deploy(template_path)
        return cloud

    def stop(self) -> None:
        for function in self.functions.values():
            if function.log is not None:
                function.log.close()
        for name, value in self._saved_environ.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        self.server.stop()

    def client(self, service: str) -> Any:
        return boto3.client(service, endpoint_url=self.endpoint_url, region_name=REGION,
                            aws_access_key_id="local", aws_secret_access_key="local",  # noqa: S106
                            config=Config(retries={"mode": "standard", "max_attempts": 3}))

    def _use_local_endpoint(self) -> None:
        # The handlers create boto3 clients with defaults: AWS_ENDPOINT_URL points them here.
        for name, value in {**FAKE_CREDENTIALS, "AWS_ENDPOINT_URL": self.endpoint_url}.items():
            self._saved_environ.setdefault(name, os.environ.get(name))
            os.environ[name] = value
        os.environ.pop("AWS_PROFILE", None)

    # -- deployment ----------------------------------------------------------------------------------

    def deploy(self, template_path: Path) -> None:
        outdir = template_path.parent
        template = json.loads(template_path.read_text())
        self.client("ssm").put_parameter(Name="/cdk-bootstrap/hnb659fds/version", Value="21", Type="String",
                                         Overwrite=True)
        self._publish_assets(outdir)
        adapted = adapt(template)
        unsupported = _unsupported_by_moto(adapted)
        if unsupported:
            raise RuntimeError(f"moto's CloudFormation cannot create {unsupported}: teach the local cloud to "
                               "apply them by hand (localcloud/template.py APPLIED_BY_HAND)")
        self._create_email_resources(adapted)
        cfn = self.client("cloudformation")
        cfn.create_stack(StackName=STACK_NAME, TemplateBody=json.dumps(adapted.body),
                         Capabilities=["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM"])
        status = _wait_for_stack(cfn)
        if status != "CREATE_COMPLETE":
            raise RuntimeError(f"the local stack ended {status}")
        resources = cfn.describe_stack_resources(StackName=STACK_NAME)["StackResources"]
        self.physical = {r["LogicalResourceId"]: r.get("PhysicalResourceId", "") for r in resources}
        self.physical.update(adapted.names)
        self.report.created = len(resources)
        stack = cfn.describe_stacks(StackName=STACK_NAME)["Stacks"][0]
        self.outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
        resolve = Resolver(template, self.physical, STACK_NAME)
        self._apply_by_hand(adapted, resolve)
        self._apply_monitoring(adapted, resolve)
        self._load_functions(template, outdir, resolve)
        self._load_mappings(adapted, resolve)
        self._load_schedules(template, resolve)
        self.report.not_emulated += [
            "KMS key policies and IAM policies are stored, not enforced (moto's default)",
            "the arm64 dependency layer is uploaded but not imported: handlers run on this machine's Python "
            "with the virtual environment's packages, pinned to the same versions",
        ]

    def _publish_assets(self, outdir: Path) -> None:
        s3 = self.client("s3")
        s3.create_bucket(Bucket=_asset_bucket(), CreateBucketConfiguration={"LocationConstraint": REGION})
        self.assets: dict[str, Path] = {}
        for manifest in outdir.glob("*.assets.json"):
            for entry in json.loads(manifest.read_text())["files"].values():
                source = outdir / entry["source"]["path"]
                for destination in entry["destinations"].values():
                    key = destination["objectKey"]
                    self.assets[key] = source
                    body = _zipped(source, self.workdir / "zips") if entry["source"].get("packaging") == "zip" \
                        else source
                    s3.upload_file(str(body), _asset_bucket(), key)

    def _create_email_resources(self, adapted: AdaptedTemplate) -> None:
        ses = self.client("sesv2")
        for logical, resource in adapted.removed_of_type("AWS::SES::ConfigurationSet").items():
            properties = resource["Properties"]
            ses.create_configuration_set(ConfigurationSetName=properties["Name"],
                                         DeliveryOptions=properties.get("DeliveryOptions", {}))
            self.report.applied.append(f"{logical}: {APPLIED_BY_HAND['AWS::SES::ConfigurationSet']}")
        for logical, resource in adapted.removed_of_type("AWS::SES::EmailIdentity").items():
            properties = resource["Properties"]
            # The template's identity, with its configuration set (a Ref, already the set's name).
            set_name = properties.get("ConfigurationSetAttributes", {}).get("ConfigurationSetName")
            if isinstance(set_name, dict):
                set_name = adapted.removed[set_name["Ref"]]["Properties"]["Name"]
            ses.create_email_identity(EmailIdentity=properties["EmailIdentity"],
                                      **({"ConfigurationSetName": set_name} if set_name else {}))
            self.report.applied.append(f"{logical}: {APPLIED_BY_HAND['AWS::SES::EmailIdentity']} (moto verifies "
                                       "it at once; SES would send a verification email)")

    def _apply_monitoring(self, adapted: AdaptedTemplate, resolve: Resolver) -> None:
        sns, cloudwatch = self.client("sns"), self.client("cloudwatch")
        for resource in adapted.removed_of_type("AWS::SNS::TopicPolicy").values():
            properties = resolve(resource["Properties"])
            for topic in properties["Topics"]:
                sns.set_topic_attributes(TopicArn=topic, AttributeName="Policy",
                                         AttributeValue=policy_json(properties["PolicyDocument"]))
        for resource in adapted.removed_of_type("AWS::SNS::Subscription").values():
            properties = resolve(resource["Properties"])
            sns.subscribe(TopicArn=properties["TopicArn"], Protocol=properties["Protocol"],
                          Endpoint=properties["Endpoint"])
        for logical, resource in adapted.removed_of_type("AWS::SES::ConfigurationSetEventDestination").items():
            properties = resolve(resource["Properties"])
            destination = properties["EventDestination"]
            self.client("ses").create_configuration_set_event_destination(
                ConfigurationSetName=properties["ConfigurationSetName"],
                EventDestination={"Name": destination["Name"], "Enabled": destination.get("Enabled", True),
                                  "MatchingEventTypes": destination["MatchingEventTypes"],
                                  "SNSDestination": {"TopicARN": destination["SnsDestination"]["TopicARN"]}})
            self.report.applied.append(
                f"{logical}: {APPLIED_BY_HAND['AWS::SES::ConfigurationSetEventDestination']}")
        alarms = adapted.removed_of_type("AWS::CloudWatch::Alarm")
        for resource in alarms.values():
            cloudwatch.put_metric_alarm(**resolve(resource["Properties"]))
        self.report.applied.append(f"{len(alarms)} alarms, the operators' topic policy and subscriptions: "
                                   f"{APPLIED_BY_HAND['AWS::CloudWatch::Alarm']}")

    def _apply_by_hand(self, adapted: AdaptedTemplate, resolve: Resolver) -> None:
        s3, sqs = self.client("s3"), self.client("sqs")
        for logical, resource in adapted.removed_of_type("Custom::S3BucketNotifications").items():
            properties = resolve(resource["Properties"])
            s3.put_bucket_notification_configuration(Bucket=properties["BucketName"],
                                                     NotificationConfiguration=properties["NotificationConfiguration"])
            self.report.applied.append(f"{logical}: {APPLIED_BY_HAND['Custom::S3BucketNotifications']}")
        left_out = 0
        for resource in adapted.removed_of_type("AWS::S3::BucketPolicy").values():
            properties = resolve(resource["Properties"])
            document = properties["PolicyDocument"]
            # moto applies a Deny statement whatever its conditions (TLS only, which encryption): it would
            # refuse every request, so conditional Denies are left out here and listed.
            kept = [s for s in document["Statement"] if s["Effect"] == "Allow" or "Condition" not in s]
            left_out += len(document["Statement"]) - len(kept)
            if kept:
                s3.put_bucket_policy(Bucket=properties["Bucket"], Policy=policy_json({**document, "Statement": kept}))
        count = len(adapted.removed_of_type("AWS::S3::BucketPolicy"))
        self.report.applied.append(f"{count} bucket policies: {APPLIED_BY_HAND['AWS::S3::BucketPolicy']}")
        self.report.not_emulated.append(
            f"{left_out} conditional Deny statements of the bucket policies (TLS only, KMS key only): moto "
            "evaluates a Deny without its conditions and would refuse every request")
        queue_policies = adapted.removed_of_type("AWS::SQS::QueuePolicy")
        for resource in queue_policies.values():
            properties = resolve(resource["Properties"])
            for queue_url in properties["Queues"]:
                sqs.set_queue_attributes(QueueUrl=queue_url,
                                         Attributes={"Policy": policy_json(properties["PolicyDocument"])})
        self.report.applied.append(f"{len(queue_policies)} queue policies: {APPLIED_BY_HAND['AWS::SQS::QueuePolicy']}")
        # moto delivers an s3:TestEvent when notifications are configured; Lambda's handler skips it too.

    def _load_functions(self, template: dict[str, Any], outdir: Path, resolve: Resolver) -> None:
        for logical, resource in template["Resources"].items():
            if resource["Type"] != "AWS::Lambda::Function" or "S3Key" not in resource["Properties"]["Code"]:
                continue  # the inline custom-resource handler: replaced by _apply_by_hand
            properties = resource["Properties"]
            layer_dirs = [self.assets[template["Resources"][layer["Ref"]]["Properties"]["Content"]["S3Key"]]
                          for layer in properties.get("Layers", [])]
            environment = {name: str(resolve(value)) for name, value in
                           properties.get("Environment", {}).get("Variables", {}).items()}
            environment = {name: _opt_path(value, layer_dirs) for name, value in environment.items()}
            name = resolve(properties.get("FunctionName", logical))
            (self.workdir / "logs").mkdir(exist_ok=True)
            log = (self.workdir / "logs" / f"{name}.log").open("a", encoding="utf-8")  # noqa: SIM115 (closed in stop)
            self.functions[logical] = Function(name, self.assets[properties["Code"]["S3Key"]], properties["Handler"],
                                               environment, int(properties.get("Timeout", 3)), log)

    def _load_mappings(self, adapted: AdaptedTemplate, resolve: Resolver) -> None:
        sqs = self.client("sqs")
        for logical, resource in adapted.removed_of_type("AWS::Lambda::EventSourceMapping").items():
            properties = resource["Properties"]
            function = self.functions[properties["FunctionName"]["Ref"]]
            queue_logical = properties["EventSourceArn"]["Fn::GetAtt"][0]
            queue_url = self.physical[queue_logical]
            arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
            self.mappings.append(Mapping(function, queue_url, arn, int(properties.get("BatchSize", 10)),
                                         "ReportBatchItemFailures" in properties.get("FunctionResponseTypes", [])))
            self.report.local_runtime.append(f"{logical}: polls {queue_url.rsplit('/', 1)[-1]} -> {function.name} "
                                             f"(batch {properties.get('BatchSize', 10)})")

    def _load_schedules(self, template: dict[str, Any], resolve: Resolver) -> None:
        by_arn = {resolve({"Fn::GetAtt": [logical, "Arn"]}): function for logical, function in self.functions.items()}
        for resource in template["Resources"].values():
            if resource["Type"] == "AWS::Events::Rule" and "ScheduleExpression" in resource["Properties"]:
                for target in resource["Properties"].get("Targets", []):
                    function = by_arn.get(resolve(target["Arn"]))
                    if function is not None:
                        self.schedules.append(function)
                        self.report.local_runtime.append(
                            f"schedule {resource['Properties']['ScheduleExpression']} -> {function.name}: run on "
                            "demand with fire_schedules()")

    # -- runtime -------------------------------------------------------------------------------------

    def run_until_idle(self, timeout_seconds: float = 300, on_batch: Callable[[RunStats], None] | None = None
                       ) -> RunStats:
        """Poll every mapped queue and invoke its function until a full round finds nothing to do."""
        stats = RunStats()
        sqs = self.client("sqs")
        deadline = time.monotonic() + timeout_seconds
        while time.monotonic() < deadline:
            busy = False
            for mapping in self.mappings:
                while batch := self._receive(sqs, mapping):
                    busy = True
                    self._invoke(sqs, mapping, batch, stats)
                    if on_batch:
                        on_batch(stats)
            if not busy and not self._in_flight(sqs):
                return stats
            if not busy:
                time.sleep(0.2)
        raise TimeoutError(f"queues still busy after {timeout_seconds} s")

    def fire_schedules(self) -> list[Any]:
        """Deliver EventBridge's scheduled event to every scheduled target (the daily digest)."""
        event = {"version": "0", "id": "local", "detail-type": "Scheduled Event", "source": "aws.events",
                 "account": ACCOUNT, "region": REGION, "resources": [], "detail": {}}
        return [function.invoke(event) for function in self.schedules]

    def _receive(self, sqs: Any, mapping: Mapping) -> list[dict]:
        return sqs.receive_message(QueueUrl=mapping.queue_url, MaxNumberOfMessages=min(10, mapping.batch_size),
                                   AttributeNames=["All"], MessageAttributeNames=["All"]).get("Messages", [])

    def _invoke(self, sqs: Any, mapping: Mapping, batch: list[dict], stats: RunStats) -> None:
        response = mapping.function.invoke(None, batch, mapping.queue_arn)
        stats.invocations += 1
        stats.messages += len(batch)
        failed = {f["itemIdentifier"] for f in response.get("batchItemFailures", [])}
        if failed and not mapping.partial_failures:
            failed = {m["MessageId"] for m in batch}
        stats.failed += len(failed)
        for message in batch:
            if message["MessageId"] in failed:
                # Back to the queue; after maxReceiveCount receives SQS's redrive policy moves it to the DLQ.
                sqs.change_message_visibility(QueueUrl=mapping.queue_url, ReceiptHandle=message["ReceiptHandle"],
                                              VisibilityTimeout=RETRY_DELAY_SECONDS)
            else:
                sqs.delete_message(QueueUrl=mapping.queue_url, ReceiptHandle=message["ReceiptHandle"])

    def _in_flight(self, sqs: Any) -> bool:
        for mapping in self.mappings:
            attributes = sqs.get_queue_attributes(QueueUrl=mapping.queue_url,
                                                  AttributeNames=["ApproximateNumberOfMessagesNotVisible"])
            if int(attributes["Attributes"].get("ApproximateNumberOfMessagesNotVisible", 0)):
                return True
        return False

    # -- reading back ----------------------------------------------------------------------------------

    def sent_emails(self) -> list[dict[str, Any]]:
        """Every email SES accepted: to, subject, text and HTML parts (moto keeps them in this process)."""
        import email
        import email.policy

        from moto.core import DEFAULT_ACCOUNT_ID
        from moto.ses.models import ses_backends

        sent = []
        for message in ses_backends[DEFAULT_ACCOUNT_ID][REGION].sent_messages:
            raw = getattr(message, "raw_data", None)
            if raw is None:
                sent.append({"to": message.destinations.get("ToAddresses", []), "subject": message.subject,
                             "text": message.body, "html": ""})
                continue
            parsed = email.message_from_string(raw, policy=email.policy.default)
            sent.append({"to": [parsed["To"]], "subject": str(parsed["Subject"]),
                         "text": parsed.get_body(("plain",)).get_content(),
                         "html": parsed.get_body(("html",)).get_content()})
        return sent

    def authority_queue_url(self, gss_code: str) -> str:
        from birthnotify.settings import authority_queue_name

        name = authority_queue_name(self.outputs["AuthorityQueuePrefix"], gss_code)
        return self.client("sqs").get_queue_url(QueueName=name)["QueueUrl"]


# -- helpers -----------------------------------------------------------------------------------------------

def synthesized_template(workdir: Path) -> Path:
    """Synthesize the real CDK app for the local stage, reusing the last synthesis if no source changed."""
    outdir = workdir / "cdk.out"
    key_file = workdir / "synth.key"
    key = _sources_key()
    template = outdir / f"{STACK_NAME}.template.json"
    if template.exists() and key_file.exists() and key_file.read_text() == key:
        return template
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from infra.app import synthesize

    os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
    path = synthesize(STAGE, outdir)
    key_file.write_text(key)
    return path


def _sources_key() -> str:
    digest = hashlib.sha256()
    for source in SOURCES:
        path = ROOT / source
        files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file()
                                                     and "__pycache__" not in p.parts)
        for file in files:
            stat = file.stat()
            digest.update(f"{file.relative_to(ROOT)}:{stat.st_size}:{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def _zipped(directory: Path, cache: Path) -> Path:
    cache.mkdir(parents=True, exist_ok=True)
    target = cache / f"{directory.name}.zip"
    if not target.exists():
        partial = target.with_suffix(".partial")
        with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
            for file in sorted(directory.rglob("*")):
                if file.is_file():
                    archive.write(file, file.relative_to(directory))
        partial.rename(target)
    return target


def _unsupported_by_moto(adapted: AdaptedTemplate) -> list[tuple[str, str]]:
    from moto.cloudformation.parsing import NULL_MODELS, get_model_map

    known = set(get_model_map()) | set(NULL_MODELS) | set(APPLIED_BY_HAND)
    return [(logical, resource["Type"]) for logical, resource in adapted.body["Resources"].items()
            if resource["Type"] not in known and not resource["Type"].startswith("Custom::")]


def _asset_bucket() -> str:
    return f"cdk-hnb659fds-assets-{ACCOUNT}-{REGION}"


def _opt_path(value: str, layer_dirs: list[Path]) -> str:
    """Lambda extracts layers under /opt: point /opt/... at the layer directory that has the file."""
    if not value.startswith("/opt/"):
        return value
    relative = value.removeprefix("/opt/")
    for layer in layer_dirs:
        if (layer / relative).exists():
            return str(layer / relative)
    return value


def _wait_for_stack(cfn: Any, timeout_seconds: float = 120) -> str:
    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline:
        status = cfn.describe_stacks(StackName=STACK_NAME)["Stacks"][0]["StackStatus"]
        if not status.endswith("IN_PROGRESS"):
            return status
        time.sleep(0.2)
    return "TIMED_OUT (a custom resource left in the template?)"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
