"""The pieces the stack is built from, without synthesizing it: context, environment mapping, the
dependency layer, and the rules that keep every wildcard and acknowledgement reasoned."""

from __future__ import annotations

import dataclasses
import re

import pytest
from aws_cdk import App, Stack, Validations
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from birthnotify.shared.settings import INGEST_ENV, Env

from infra.config import CONTEXT_KEYS, ConfigError, StageConfig
from infra.constructs.function import MissingEnvironment, environment_for
from infra.constructs.layers import PROVIDED_BY_RUNTIME, REQUIREMENTS, dependencies_layer_dir
from infra.constructs.policy import LeastPrivilegePolicy
from infra.nag import acknowledge, collect, wildcard_findings

pytestmark = pytest.mark.infra


def config(**context) -> StageConfig:
    return StageConfig.from_context(context.get)


def test_context_defaults_to_a_disposable_dev_stage_and_prod_retains():
    dev, prod = config(), config(stage="prod")
    assert (dev.stage, dev.retain_data, dev.prefix) == ("dev", False, "birthnotify-dev")
    assert (prod.retain_data, prod.authority_queue_prefix) == (True, "birthnotify-prod-authority")
    assert config(stage="staging").retain_data  # only dev may lose data


def test_context_values_from_the_cli_are_converted():
    cfg = config(
        raw_upload_retention_days="14", held_reviewer_principals="arn:a, arn:b", email_transport="notify",
        notify_template_id="f33517ff-2a88-4f6e-b855-c550268ce08a",
    )
    assert (cfg.raw_upload_retention_days, cfg.held_reviewer_principals) == (14, ("arn:a", "arn:b"))


@pytest.mark.parametrize(
    ("context", "message"),
    [
        ({"stage": "Prod!"}, "stage='Prod!'"),
        ({"email_transport": "carrier-pigeon"}, "email_transport"),
        ({"email_sender": "nobody"}, "email_sender"),
        ({"email_identity": "other.example"}, "email_identity"),
        ({"raw_upload_retention_days": "40"}, "raw_upload_retention_days must be 1..34"),
        ({"log_retention_days": "42"}, "log_retention_days"),
        ({"ingest_timeout_seconds": "1000"}, "ingest_timeout_seconds"),
        ({"ingest_max_concurrency": "1"}, "ingest_max_concurrency"),
        ({"authority_max_message_age_hours": "400"}, "authority_max_message_age_hours"),
        ({"ingest_memory_mb": "lots"}, "ingest_memory_mb='lots': expected int"),
    ],
)
def test_bad_context_is_refused_with_the_key_named(context, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        config(**context)


def test_every_setting_is_a_documented_context_key():
    fields = {f.name for f in dataclasses.fields(StageConfig)}
    assert fields == set(CONTEXT_KEYS)


def test_function_environment_has_exactly_the_names_and_refuses_a_missing_value():
    values = {name: f"value-of-{name.value}" for name in Env}
    env = environment_for("ingest", INGEST_ENV, values)
    assert set(env) == {name.value for name in INGEST_ENV}
    with pytest.raises(MissingEnvironment, match="STATE_TABLE"):
        environment_for("ingest", INGEST_ENV, {k: v for k, v in values.items() if k is not Env.STATE_TABLE})


def test_dependency_layer_holds_arm64_cpython313_wheels_without_the_runtimes_own_packages():
    directory, key = dependencies_layer_dir()
    again, same_key = dependencies_layer_dir()
    assert (again, same_key) == (directory, key)  # cached: the second call builds nothing
    site = directory / "python"
    assert (
        (site / "aws_lambda_powertools").is_dir()
        and (site / "pydantic").is_dir()
        and (site / "tzdata").is_dir()
    )
    cores = list((site / "pydantic_core").glob("_pydantic_core.cpython-313-aarch64-linux-gnu.so"))
    assert cores, "pydantic_core must be the Lambda platform's wheel"
    names = {p.name.split("-")[0].lower() for p in site.iterdir()}
    assert not names & set(PROVIDED_BY_RUNTIME)
    assert not list(site.rglob("__pycache__"))
    pins = dict(line.split("==") for line in REQUIREMENTS.read_text().splitlines() if "==" in line)
    assert (site / f"pydantic-{pins['pydantic']}.dist-info").is_dir()


def test_a_wildcard_needs_a_reason_which_becomes_its_acknowledgement():
    stack = Stack(App(), "S")
    bucket = s3.Bucket(stack, "B")
    role = iam.Role(stack, "R", assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"))
    policy = LeastPrivilegePolicy(stack, "P", role=role, name="p", description="d")
    with pytest.raises(ValueError, match="give a wildcard_reason"):
        policy.allow("Read", ["s3:GetObject"], [bucket.arn_for_objects("in/*")])
    with pytest.raises(ValueError, match="drop the wildcard_reason"):
        policy.allow("Meta", ["s3:GetBucketLocation"], [bucket.bucket_arn], wildcard_reason="x" * 50)
    findings = wildcard_findings(stack, ["s3:Get*"], [bucket.arn_for_objects("in/*")])
    logical_id = stack.resolve(stack.get_logical_id(bucket.node.default_child))
    assert findings == [
        "AwsSolutions-IAM5[Action::s3:Get*]",
        f"AwsSolutions-IAM5[Resource::<{logical_id}.Arn>/in/*]",
    ]


def test_an_acknowledgement_needs_a_specific_reason():
    stack = Stack(App(), "S")
    with pytest.raises(ValueError, match="specific reason"):
        acknowledge(stack, "AwsSolutions-S1", "not needed")


def test_an_id_validations_refuses_is_recorded_as_metadata_that_cdk_nag_reads():
    stack = Stack(App(), "S")
    bucket = s3.Bucket(stack, "B")
    refused = "AwsSolutions-IAM4[Policy::a]::b::c"  # two '::' outside brackets: Validations rejects it
    acknowledge(bucket, refused, "A reason long enough to say why this finding is acceptable here.")
    entries = [e.data for e in bucket.node.metadata if e.type == Validations.ACKNOWLEDGED_RULES_METADATA_KEY]
    assert entries == [{refused: "A reason long enough to say why this finding is acceptable here."}]
    assert [a.rule for a in collect(stack)] == [refused]
