"""A pipeline Lambda function: python3.13 on arm64 with the three layers, JSON logs in its own encrypted log
group, its environment encrypted with a customer-managed key, X-Ray tracing, and a role whose only
permissions are the statements its construct writes."""

from __future__ import annotations

from collections.abc import Mapping

from aws_cdk import ArnFormat, Duration, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sqs as sqs
from birthnotify.shared.settings import Env
from constructs import Construct

from infra.config import ROOT, StageConfig
from infra.constructs.layers import ARCHITECTURE, EXCLUDE, RUNTIME, Layers
from infra.constructs.policy import LeastPrivilegePolicy
from infra.nag import acknowledge, acknowledge_packs, skip_checkov

POWERTOOLS_NAMESPACE = "BirthNotifications"
NO_VPC = (
    "The function reaches only AWS APIs (S3, SQS, DynamoDB, KMS, SES) over TLS with IAM authentication; there "
    "is no VPC resource to reach, and every data store denies non-TLS access."
)
NO_VPC_WITH_MESH = (
    "The function reaches AWS APIs over TLS with IAM authentication and NHS England's MESH internet endpoint "
    "over mutual TLS (the mailbox's client certificate) and MESH's own token authentication (and, for email, "
    "SES or GOV.UK Notify over TLS); there is no VPC resource to reach, and in a VPC it would need a NAT "
    "gateway for MESH and GOV.UK Notify."
)
NO_RESERVED_CONCURRENCY = (
    "Concurrency is bounded where the work arrives: each function's SQS event source sets a maximum "
    "concurrency (and the digest schedule fires once a day); reserved concurrency would take from the "
    "account pool and fails in accounts on the default quota."
)


class MissingEnvironment(ValueError):
    """The stack has no value for a variable the handler reads (birthnotify.shared.settings)."""


def environment_for(function: str, names: frozenset[Env], values: Mapping[Env, str]) -> dict[str, str]:
    """Exactly ``names``, each with its value: adding a variable in settings fails synthesis until the stack
    gives it a value."""
    missing = sorted(name.value for name in names if name not in values)
    if missing:
        raise MissingEnvironment(
            f"the {function} function reads {missing} (birthnotify.shared.settings) but the stack "
            "sets no value for them: map each in infra/stack.py"
        )
    return {name.value: str(values[name]) for name in sorted(names)}


class PipelineFunction(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: StageConfig,
        name: str,
        description: str,
        layers: Layers,
        environment: Mapping[str, str],
        memory_mb: int,
        timeout: Duration,
        log_key: kms.IKey,
        environment_key: kms.IKey,
        dead_letter_queue: sqs.IQueue | None = None,
        concurrency_reason: str = NO_RESERVED_CONCURRENCY,
        vpc_reason: str = NO_VPC,
    ) -> None:
        super().__init__(scope, construct_id)
        code = ROOT / "functions" / name
        if not code.is_dir():
            raise FileNotFoundError(f"the {name} function has no code: {code} does not exist")
        self.function_name = config.function_name(name)
        removal = config.removal_policy
        self.log_group = logs.LogGroup(
            self,
            "Logs",
            log_group_name=f"/aws/lambda/{self.function_name}",
            retention=config.log_retention,
            encryption_key=log_key,
            removal_policy=removal,
        )
        self.role = iam.Role(
            self,
            "Role",
            role_name=config.function_role_name(name),
            description=f"Execution role of the {self.function_name} function",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
        )
        self.policy = LeastPrivilegePolicy(
            self,
            "Policy",
            role=self.role,
            name=f"{self.function_name}-function",
            description=f"Everything the {self.function_name} function may do",
        )
        self.policy.allow("WriteOwnLogs", ["logs:CreateLogStream", "logs:PutLogEvents"], [self.log_group.log_group_arn])
        function_arn = Stack.of(self).format_arn(
            service="lambda",
            resource="function",
            resource_name=self.function_name,
            arn_format=ArnFormat.COLON_RESOURCE_NAME,
        )
        # Lambda decrypts the environment with the execution role when it starts an instance; the encryption
        # context (the function's ARN) keeps the role to its own function's variables.
        self.policy.allow(
            "DecryptOwnEnvironment",
            ["kms:Decrypt"],
            [environment_key.key_arn],
            conditions={"StringEquals": {"kms:EncryptionContext:aws:lambda:FunctionArn": function_arn}},
        )
        self.policy.allow(
            "XRayTracing",
            ["xray:PutTraceSegments", "xray:PutTelemetryRecords"],
            ["*"],
            wildcard_reason="X-Ray's PutTraceSegments and PutTelemetryRecords have no resource-level "
            "permissions: AWS requires Resource '*' for them.",
        )
        self.function = lambda_.Function(
            self,
            "Function",
            function_name=self.function_name,
            description=description,
            runtime=RUNTIME,
            architecture=ARCHITECTURE,
            handler="handler.handler",
            code=lambda_.Code.from_asset(str(code), exclude=EXCLUDE),
            layers=layers.all,
            memory_size=memory_mb,
            timeout=timeout,
            # The role's permissions are the managed policy above, so CDK's implicit grants are not wanted: an
            # immutable reference to the role ignores them (and adds no redundant DependsOn on the role).
            role=iam.Role.from_role_arn(self, "ExecutionRole", self.role.role_arn, mutable=False),
            environment_encryption=environment_key,
            environment={
                **environment,
                "POWERTOOLS_SERVICE_NAME": self.function_name,
                "POWERTOOLS_METRICS_NAMESPACE": POWERTOOLS_NAMESPACE,
            },
            tracing=lambda_.Tracing.ACTIVE,
            logging_format=lambda_.LoggingFormat.JSON,
            application_log_level_v2=lambda_.ApplicationLogLevel.INFO,
            system_log_level_v2=lambda_.SystemLogLevel.WARN,
            log_group=self.log_group,
            recursive_loop=lambda_.RecursiveLoop.TERMINATE,
            dead_letter_queue=dead_letter_queue,
        )
        # Lambda checks some permissions (a DLQ, an SQS event source) when it creates the function or the
        # mapping: the policy must be attached first.
        self.function.node.add_dependency(self.policy.policy)
        self._acknowledge_common(concurrency_reason, vpc_reason)

    def _acknowledge_common(self, concurrency_reason: str, vpc_reason: str) -> None:
        fn = self.function
        acknowledge(
            fn,
            "AwsSolutions-L1",
            "python3.13 is deliberate: the dependency layer is built for CPython 3.13 wheels and the "
            "tests run against the same pins; move runtime and layer together.",
        )
        acknowledge_packs(fn, "LambdaInsideVPC", vpc_reason)
        skip_checkov(fn, "CKV_AWS_117", vpc_reason)
        acknowledge_packs(fn, "LambdaConcurrency", concurrency_reason)
        skip_checkov(fn, "CKV_AWS_115", concurrency_reason)
