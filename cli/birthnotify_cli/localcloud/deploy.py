"""Deploy the synthesized templates into the moto server as the CDK CLI deploys them into an account: the
bootstrap version parameter and the asset bucket with the zipped assets, then, stack by stack in dependency
order (``cdk deploy --all``), CloudFormation CreateStack with the adapted template and by hand what moto's
CloudFormation cannot do, with the template's values. The app's stacks refer to each other only by
predictable names, which resolve in moto as in AWS; a cross-stack reference the local cloud cannot
resolve (``Fn::ImportValue`` in a resource applied by hand) fails the deployment with its name."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from birthnotify_cli.localcloud.report import DeployReport
from birthnotify_cli.localcloud.runtime import ASYNC_RETRIES, FunctionLog, LocalFunction, Schedule, SqsMapping
from birthnotify_cli.localcloud.synth import zipped
from birthnotify_cli.localcloud.template import (
    ACCOUNT,
    APPLIED,
    LOCAL_RUNTIME,
    NOT_EMULATED,
    REGION,
    SKIPPED,
    TREATMENTS,
    AdaptedTemplate,
    Resolver,
    adapt,
    policy_json,
)

Clients = Callable[[str], Any]
BOOTSTRAP_VERSION = "21"
ASSET_BUCKET = f"cdk-hnb659fds-assets-{ACCOUNT}-{REGION}"
BUCKET_PROPERTIES_NOT_APPLIED = (
    "LifecycleConfiguration",
    "LoggingConfiguration",
    "OwnershipControls",
    "PublicAccessBlockConfiguration",
)


@dataclass
class Deployment:
    stack_name: str
    template: dict[str, Any]
    adapted: AdaptedTemplate
    physical: dict[str, str]
    """Logical id -> physical id (bucket name, queue URL, function name ...), from DescribeStackResources."""
    outputs: dict[str, str]
    report: DeployReport
    assets: dict[str, Path] = field(default_factory=dict)
    """Asset object key -> the asset's directory (or file) in cdk.out."""
    resolve: Resolver | None = None


def deploy_app(
    clients: Clients, template_paths: list[Path] | tuple[Path, ...], zip_cache: Path, report: DeployReport | None = None
) -> list[Deployment]:
    """Every stack, in the order given (``synth.deployment_order``: each after the stacks it depends on), into
    one report; the assets of the cloud assembly are published once."""
    report = report or DeployReport()
    deployments: list[Deployment] = []
    for template_path in template_paths:
        assets = deployments[0].assets if deployments else None
        deployments.append(deploy(clients, template_path, zip_cache, report, assets=assets))
    return deployments


def deploy(
    clients: Clients,
    template_path: Path,
    zip_cache: Path,
    report: DeployReport | None = None,
    stack_name: str | None = None,
    assets: dict[str, Path] | None = None,
) -> Deployment:
    """One stack; its cloud assembly's assets are published unless ``assets`` says they already are."""
    outdir = template_path.parent
    template = json.loads(template_path.read_text(encoding="utf-8"))
    stack_name = stack_name or template_path.name.removesuffix(".template.json")
    report = report or DeployReport()
    report.stack_name = report.stack_name or stack_name
    report.stacks.append(stack_name)

    if assets is None:
        clients("ssm").put_parameter(
            Name="/cdk-bootstrap/hnb659fds/version", Value=BOOTSTRAP_VERSION, Type="String", Overwrite=True
        )
        assets = publish_assets(clients("s3"), outdir, zip_cache)
    adapted = adapt(template, created=_create_secrets(clients, template))
    report.notes += adapted.notes
    _create_before_the_stack(clients, adapted, report)

    cfn = clients("cloudformation")
    cfn.create_stack(
        StackName=stack_name,
        TemplateBody=json.dumps(adapted.body),
        Capabilities=["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM", "CAPABILITY_AUTO_EXPAND"],
    )
    status, reason = _wait_for_stack(cfn, stack_name)
    if status != "CREATE_COMPLETE":
        raise RuntimeError(f"the local stack {stack_name} ended {status}: {reason}")
    resources = cfn.describe_stack_resources(StackName=stack_name)["StackResources"]
    physical = {r["LogicalResourceId"]: r.get("PhysicalResourceId", "") for r in resources}
    physical.update(adapted.names)
    report.created += len(resources)
    stack = cfn.describe_stacks(StackName=stack_name)["Stacks"][0]
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}

    resolve = Resolver(template, physical, stack_name)
    _apply_after_the_stack(clients, adapted, resolve, report)
    for logical, treatment in adapted.treatments.items():
        if treatment.action == SKIPPED:
            report.add(logical, treatment.resource_type, SKIPPED, treatment.why)
    return Deployment(stack_name, template, adapted, physical, outputs, report, assets, resolve)


def publish_assets(s3: Any, outdir: Path, zip_cache: Path) -> dict[str, Path]:
    """Upload every file asset of the cdk.out manifests to the bootstrap asset bucket, as ``cdk deploy``."""
    s3.create_bucket(Bucket=ASSET_BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
    assets: dict[str, Path] = {}
    for manifest in sorted(outdir.glob("*.assets.json")):
        for entry in json.loads(manifest.read_text(encoding="utf-8")).get("files", {}).values():
            source = outdir / entry["source"]["path"]
            for destination in entry["destinations"].values():
                bucket = (
                    destination["bucketName"].replace("${AWS::AccountId}", ACCOUNT).replace("${AWS::Region}", REGION)
                )
                if bucket != ASSET_BUCKET:
                    s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
                key = destination["objectKey"]
                assets[key] = source
                body = zipped(source, zip_cache) if entry["source"].get("packaging") == "zip" else source
                s3.upload_file(str(body), bucket, key)
    return assets


def _create_secrets(clients: Clients, template: dict[str, Any]) -> dict[str, str]:
    """Secrets Manager secrets (moto's CloudFormation has no model for them), made before the stack: policies
    and environments refer to them by ARN (a Ref), which moto gives only when a secret is created."""
    made = {}
    for logical, resource in template["Resources"].items():
        if resource["Type"] != "AWS::SecretsManager::Secret":
            continue
        properties = resource.get("Properties", {})
        if "SecretString" in properties:
            value = properties["SecretString"]
        else:  # what GenerateSecretString would give: a random password, which the functions refuse as unset
            value = secrets.token_urlsafe(32)
        made[logical] = clients("secretsmanager").create_secret(
            Name=properties["Name"], Description=properties.get("Description", ""), SecretString=value
        )["ARN"]
    return made


def _create_before_the_stack(clients: Clients, adapted: AdaptedTemplate, report: DeployReport) -> None:
    """The SES configuration set, identity and template: the function's environment refers to them by Ref."""
    for logical, resource in adapted.removed_of_type("AWS::SecretsManager::Secret").items():
        report.add(logical, resource["Type"], APPLIED, TREATMENTS[resource["Type"]][1])
    sesv2 = clients("sesv2")
    for logical, resource in adapted.removed_of_type("AWS::SES::ConfigurationSet").items():
        properties = resource["Properties"]
        options = {
            key: properties[key]
            for key in ("DeliveryOptions", "ReputationOptions", "SendingOptions")
            if key in properties
        }
        sesv2.create_configuration_set(ConfigurationSetName=properties["Name"], **options)
        report.add(logical, resource["Type"], APPLIED, TREATMENTS[resource["Type"]][1])
        report.add(
            logical,
            resource["Type"],
            NOT_EMULATED,
            "its TLS requirement and sending options are stored; "
            "moto's SendBulkTemplatedEmail does not look at the configuration set",
        )
    for logical, resource in adapted.removed_of_type("AWS::SES::EmailIdentity").items():
        properties = resource["Properties"]
        set_name = properties.get("ConfigurationSetAttributes", {}).get("ConfigurationSetName")
        if isinstance(set_name, dict):
            set_name = adapted.names.get(set_name.get("Ref", ""), None)
        sesv2.create_email_identity(
            EmailIdentity=properties["EmailIdentity"], **({"ConfigurationSetName": set_name} if set_name else {})
        )
        report.add(logical, resource["Type"], APPLIED, TREATMENTS[resource["Type"]][1])
    for logical, resource in adapted.removed_of_type("AWS::SES::Template").items():
        clients("ses").create_template(Template=resource["Properties"]["Template"])
        report.add(logical, resource["Type"], APPLIED, TREATMENTS[resource["Type"]][1])


def _apply_after_the_stack(clients: Clients, adapted: AdaptedTemplate, resolve: Resolver, report: DeployReport) -> None:
    s3, sqs, sns = clients("s3"), clients("sqs"), clients("sns")
    # Before the notifications: every object uploaded from now on has a version, as in AWS.
    for logical, resource in adapted.body["Resources"].items():
        if resource["Type"] != "AWS::S3::Bucket":
            continue
        properties = resource.get("Properties", {})
        versioning = properties.get("VersioningConfiguration")
        if versioning:
            s3.put_bucket_versioning(
                Bucket=resolve.ref(logical), VersioningConfiguration={"Status": versioning["Status"]}
            )
            report.add(
                logical,
                resource["Type"],
                APPLIED,
                "moto's CloudFormation ignores VersioningConfiguration: "
                "applied with PutBucketVersioning (events carry each upload's versionId)",
            )
        ignored = [name for name in BUCKET_PROPERTIES_NOT_APPLIED if name in properties]
        if ignored:
            report.add(
                logical,
                resource["Type"],
                NOT_EMULATED,
                f"{', '.join(ignored)} not applied (moto's "
                "CloudFormation skips them): nothing expires and no access log is written locally",
            )
    for logical, resource in adapted.removed_of_type("Custom::S3BucketNotifications").items():
        properties = resolve(resource["Properties"])
        s3.put_bucket_notification_configuration(
            Bucket=properties["BucketName"], NotificationConfiguration=properties["NotificationConfiguration"]
        )
        report.add(logical, resource["Type"], APPLIED, TREATMENTS[resource["Type"]][1])

    for logical, resource in adapted.removed_of_type("AWS::S3::BucketPolicy").items():
        properties = resolve(resource["Properties"])
        document = properties["PolicyDocument"]
        # moto's S3 applies a Deny statement whatever its conditions (TLS only, which KMS key): it would
        # refuse every request, so conditional Denies are left out here, and listed.
        kept = [s for s in document["Statement"] if s["Effect"] == "Allow" or "Condition" not in s]
        left_out = len(document["Statement"]) - len(kept)
        if kept:
            s3.put_bucket_policy(Bucket=properties["Bucket"], Policy=policy_json({**document, "Statement": kept}))
        why = TREATMENTS[resource["Type"]][1]
        report.add(logical, resource["Type"], APPLIED, why if kept else why + " (nothing left to apply)")
        if left_out:
            report.add(
                logical,
                resource["Type"],
                NOT_EMULATED,
                "its conditional Deny statements (TLS only, "
                "encryption with the bucket's key) are left out: moto's S3 evaluates a Deny without its "
                "conditions and would refuse every request",
            )

    for logical, resource in adapted.removed_of_type("AWS::SQS::QueuePolicy").items():
        properties = resolve(resource["Properties"])
        for queue_url in properties["Queues"]:
            sqs.set_queue_attributes(
                QueueUrl=queue_url, Attributes={"Policy": policy_json(properties["PolicyDocument"])}
            )
        report.add(logical, resource["Type"], APPLIED, TREATMENTS[resource["Type"]][1])

    for logical, resource in adapted.removed_of_type("AWS::SNS::TopicPolicy").items():
        properties = resolve(resource["Properties"])
        for topic in properties["Topics"]:
            sns.set_topic_attributes(
                TopicArn=topic, AttributeName="Policy", AttributeValue=policy_json(properties["PolicyDocument"])
            )
        report.add(logical, resource["Type"], APPLIED, TREATMENTS[resource["Type"]][1])

    for logical, resource in adapted.removed_of_type("AWS::SNS::Subscription").items():
        properties = resolve(resource["Properties"])
        sns.subscribe(TopicArn=properties["TopicArn"], Protocol=properties["Protocol"], Endpoint=properties["Endpoint"])
        report.add(logical, resource["Type"], APPLIED, TREATMENTS[resource["Type"]][1] + " (nothing is delivered)")

    # Monitoring: useful to look at, not needed to run; a failure is listed rather than stopping the deploy.
    for logical, resource in adapted.removed_of_type("AWS::SES::ConfigurationSetEventDestination").items():
        try:
            properties = resolve(resource["Properties"])
            destination = properties["EventDestination"]
            clients("ses").create_configuration_set_event_destination(
                ConfigurationSetName=properties["ConfigurationSetName"],
                EventDestination={
                    "Name": destination.get("Name", logical),
                    "Enabled": destination.get("Enabled", True),
                    "MatchingEventTypes": destination["MatchingEventTypes"],
                    "SNSDestination": {"TopicARN": destination["SnsDestination"]["TopicARN"]},
                },
            )
            report.add(logical, resource["Type"], APPLIED, TREATMENTS[resource["Type"]][1])
        except (ClientError, BotoCoreError, KeyError) as exc:
            report.add(logical, resource["Type"], SKIPPED, f"could not be applied: {exc}")
    for logical, resource in adapted.removed_of_type("AWS::CloudWatch::Alarm").items():
        try:
            clients("cloudwatch").put_metric_alarm(**resolve(resource["Properties"]))
            report.add(logical, resource["Type"], APPLIED, TREATMENTS[resource["Type"]][1])
        except (ClientError, BotoCoreError, KeyError) as exc:
            report.add(logical, resource["Type"], SKIPPED, f"could not be applied: {exc}")


# -- what the local runtime plays --------------------------------------------------------------------------


def load_functions(deployment: Deployment, logs: Path | None) -> dict[str, LocalFunction]:
    """Every function with a code asset (the custom-resource provider with inline code is never needed)."""
    template, resolve, report = deployment.template, deployment.resolve, deployment.report
    assert resolve is not None
    functions = {}
    layer_of: dict[Path, str] = {}
    for logical, resource in template["Resources"].items():
        properties = resource.get("Properties", {})
        if resource["Type"] != "AWS::Lambda::Function":
            continue
        code = properties.get("Code", {})
        if "S3Key" not in code or code["S3Key"] not in deployment.assets:
            report.add(
                logical,
                resource["Type"],
                NOT_EMULATED,
                "created by moto, never invoked locally (inline code of a custom-resource provider, or no code asset)",
            )
            continue
        layer_dirs = []
        for layer in properties.get("Layers", []):
            layer_logical = layer.get("Ref") if isinstance(layer, dict) else None
            layer_properties = template["Resources"].get(layer_logical or "", {}).get("Properties", {})
            key = layer_properties.get("Content", {}).get("S3Key")
            if key in deployment.assets:
                layer_dirs.append((layer_logical, deployment.assets[key]))
            else:
                report.add(logical, resource["Type"], SKIPPED, f"layer {layer} is not a local asset: not importable")
        python_paths = []
        for layer_logical, directory in layer_dirs:
            python = directory / "python"
            if not python.is_dir():
                continue
            first = python not in layer_of
            layer_of[python] = layer_logical
            if any(python.rglob("*.so")):
                if not first:
                    continue
                report.add(
                    layer_logical,
                    "AWS::Lambda::LayerVersion",
                    NOT_EMULATED,
                    "holds compiled packages built for the Lambda runtime (python3.13 arm64): not put on "
                    "sys.path; this environment's packages (installed with the same pins) stand in",
                )
            else:
                python_paths.append(python)
        if "TracingConfig" in properties:
            report.add(
                logical,
                resource["Type"],
                NOT_EMULATED,
                "X-Ray tracing is off locally (the trace "
                "header says not sampled, and POWERTOOLS_TRACE_DISABLED=true while it runs)",
            )
        environment = {}
        for name, value in properties.get("Environment", {}).get("Variables", {}).items():
            resolved = resolve(value)
            environment[name] = _opt_path(str(resolved), [d for _, d in layer_dirs])
        name = str(resolve(properties.get("FunctionName") or {"Ref": logical}))
        role = properties.get("Role")
        dead_letter = properties.get("DeadLetterConfig", {}).get("TargetArn")
        dead_letter_url = _queue_url_of(resolve(dead_letter), deployment) if dead_letter else None
        functions[logical] = LocalFunction(
            logical_id=logical,
            name=name,
            code_dir=deployment.assets[code["S3Key"]],
            handler=properties["Handler"],
            environment=environment,
            timeout_seconds=float(properties.get("Timeout", 3)),
            memory_mb=int(properties.get("MemorySize", 128)),
            python_paths=python_paths,
            dead_letter_queue_url=dead_letter_url,
            log=FunctionLog(logs / f"{name}.log") if logs else None,
            role_arn=str(resolve(role)) if role else None,
            runtime=str(properties.get("Runtime", "python3.13")),
        )
    _report_layers(functions, layer_of, report)
    return functions


def load_mappings(deployment: Deployment, functions: dict[str, LocalFunction], sqs: Any) -> list[SqsMapping]:
    mappings = []
    report, resolve = deployment.report, deployment.resolve
    assert resolve is not None
    for logical, resource in deployment.adapted.removed_of_type("AWS::Lambda::EventSourceMapping").items():
        properties = resource["Properties"]
        function_ref = properties["FunctionName"]
        function_logical = function_ref.get("Ref") if isinstance(function_ref, dict) else None
        function = functions.get(function_logical or "") or next(
            (f for f in functions.values() if f.name == resolve(function_ref)), None
        )
        source_arn = str(resolve(properties.get("EventSourceArn", "")))
        if function is None or not source_arn.startswith("arn:aws:sqs:"):
            report.add(logical, resource["Type"], SKIPPED, f"not an SQS mapping to a local function ({source_arn})")
            continue
        queue_url = sqs.get_queue_url(QueueName=source_arn.rsplit(":", 1)[-1])["QueueUrl"]
        batch_size = int(properties.get("BatchSize", 10))
        partial = "ReportBatchItemFailures" in properties.get("FunctionResponseTypes", [])
        enabled = properties.get("Enabled", True) not in (False, "false")
        mappings.append(SqsMapping(logical, function, queue_url, source_arn, batch_size, partial, enabled))
        unplayed = [
            key for key in ("MaximumBatchingWindowInSeconds", "ScalingConfig", "FilterCriteria") if key in properties
        ]
        report.add(
            logical,
            resource["Type"],
            LOCAL_RUNTIME,
            f"polls {queue_url.rsplit('/', 1)[-1]} -> {function.name}, batch {batch_size}"
            f"{', partial batch failures' if partial else ''}{'' if enabled else ', disabled'}"
            + (f"; not played: {', '.join(unplayed)} (one batch at a time, no waiting)" if unplayed else ""),
        )
    return mappings


def load_schedules(deployment: Deployment, functions: dict[str, LocalFunction]) -> list[Schedule]:
    report, resolve = deployment.report, deployment.resolve
    assert resolve is not None
    by_arn = {f.arn: f for f in functions.values()}
    retries = {}  # function name -> MaximumRetryAttempts of its EventInvokeConfig
    for logical, resource in deployment.template["Resources"].items():
        if resource["Type"] == "AWS::Lambda::EventInvokeConfig":
            properties = resource["Properties"]
            retries[str(resolve(properties["FunctionName"]))] = int(properties.get("MaximumRetryAttempts", 2))
            report.add(
                logical,
                resource["Type"],
                LOCAL_RUNTIME,
                f"retries of {resolve(properties['FunctionName'])}'s "
                f"asynchronous invocations: {retries[str(resolve(properties['FunctionName']))]}, played by "
                "fire_schedules (the event's maximum age is not: nothing waits locally)",
            )
    schedules = []
    for logical, resource in deployment.template["Resources"].items():
        properties = resource.get("Properties", {})
        if resource["Type"] != "AWS::Events::Rule" or "ScheduleExpression" not in properties:
            continue
        rule_name = deployment.physical.get(logical) or properties.get("Name") or logical
        rule_name = rule_name.rsplit("/", 1)[-1]
        for target in properties.get("Targets", []):
            function = by_arn.get(str(resolve(target["Arn"])))
            if function is None:
                report.add(
                    logical,
                    resource["Type"],
                    SKIPPED,
                    f"scheduled target {target.get('Id')} is not a local function: never delivered",
                )
                continue
            if properties.get("State", "ENABLED") != "ENABLED":
                report.add(logical, resource["Type"], SKIPPED, "disabled rule: never fired")
                continue
            unsupported = [k for k in ("InputPath", "InputTransformer") if k in target]
            constant = json.loads(target["Input"]) if "Input" in target else None
            schedules.append(
                Schedule(
                    logical,
                    rule_name,
                    properties["ScheduleExpression"],
                    function,
                    constant,
                    retries=retries.get(function.name, ASYNC_RETRIES),
                )
            )
            report.add(
                logical,
                resource["Type"],
                LOCAL_RUNTIME,
                f"{properties['ScheduleExpression']} -> {function.name}: delivered on demand by "
                "fire_schedules() (nothing runs on a clock)"
                + (f"; {', '.join(unsupported)} not applied" if unsupported else ""),
            )
    return schedules


def _report_layers(functions: dict[str, LocalFunction], layer_of: dict[Path, str], report: DeployReport) -> None:
    """Say, per layer, which packages each function imports from it (anew, for itself)."""
    for python, logical in layer_of.items():
        users = [f.name for f in functions.values() if python in f.python_paths]
        packages = sorted(p.name for p in python.iterdir() if (p / "__init__.py").exists())
        if users and packages:
            report.add(
                logical,
                "AWS::Lambda::LayerVersion",
                LOCAL_RUNTIME,
                f"{', '.join(packages)} imported from the layer asset by {', '.join(users)}, each in a module "
                "namespace of its own (as in its own container): this process's imports are set aside while "
                "a function runs",
            )


def _opt_path(value: str, layer_dirs: list[Path]) -> str:
    """Lambda extracts layers under /opt (a later layer over an earlier one): point /opt/... at the layer
    asset that holds the file."""
    if not value.startswith("/opt/"):
        return value
    relative = value.removeprefix("/opt/")
    for layer in reversed(layer_dirs):
        if (layer / relative).exists():
            return str(layer / relative)
    return value


def _queue_url_of(arn: Any, deployment: Deployment) -> str | None:
    arn = str(arn)
    if not arn.startswith("arn:aws:sqs:"):
        return None
    name = arn.rsplit(":", 1)[-1]
    return next((url for url in deployment.physical.values() if str(url).endswith(f"/{name}")), None)


def _wait_for_stack(cfn: Any, stack_name: str, timeout_seconds: float = 120) -> tuple[str, str]:
    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline:
        stack = cfn.describe_stacks(StackName=stack_name)["Stacks"][0]
        if not stack["StackStatus"].endswith("IN_PROGRESS"):
            return stack["StackStatus"], stack.get("StackStatusReason", "")
        time.sleep(0.2)
    return "TIMED_OUT", "still in progress (a custom resource left in the template?)"
