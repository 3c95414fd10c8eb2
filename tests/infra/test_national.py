"""A national deployment: every children's services authority in England and Wales (175, generated from the
councils data with an agreement and a consumer role each) and several trusts, in one CDK app that stays
inside CloudFormation's limits, passes every check, and gives queues to registry authorities only.

The same file runs checkov once over these templates and those of the full prod synthesis."""

from __future__ import annotations

import csv
import json

import pytest
from birthnotify.shared.names import authority_queue_name
from template_query import as_list, cfn_lint, checkov, policy_of, resources, role_of

from infra.nag import checkov_skips
from infra.national import COUNCILS
from infra.shards import SHARD_SPAN

pytestmark = pytest.mark.infra

MAX_RESOURCES, MAX_OUTPUTS, MAX_TEMPLATE_BYTES = 500, 200, 1_000_000
"""CloudFormation's quotas per stack (the template body is what CDK uploads, byte for byte)."""


def councils() -> list[dict[str, str]]:
    with COUNCILS.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def registry_of(synthesis):
    return synthesis.stack.registry


def test_the_national_registry_is_every_current_childrens_services_authority(national):
    registry = registry_of(national)
    expected = {
        r["gss_code"] for r in councils() if r["current"] == "True" and r["childrens_services_gss"] == r["gss_code"]
    }
    assert {a.gss_code for a in registry.authorities} == expected and len(expected) == 175
    assert all(a.agreements and a.consumer_principals for a in registry.authorities)
    assert len(registry.trusts) >= 5 and all(t.uploader_principals for t in registry.trusts)


def test_every_stack_is_within_cloudformations_limits(national):
    assert len(national.authority_stacks) >= 175 // SHARD_SPAN
    for stack in national.stacks:
        template, path = national.template_of(stack), national.path_of(stack)
        size = (len(template["Resources"]), len(template.get("Outputs", {})), path.stat().st_size)
        assert size[0] <= MAX_RESOURCES and size[1] <= MAX_OUTPUTS and size[2] <= MAX_TEMPLATE_BYTES, (
            stack.stack_name,
            size,
        )
    # Bounded by construction: a shard holds at most SHARD_SPAN authorities, whatever the registry.
    assert max(len(s.authorities.by_gss) for s in national.authority_stacks) <= SHARD_SPAN


def test_the_core_stack_does_not_grow_with_the_authorities(national, dev):
    national_core, dev_core = national.template, dev.template
    kinds = {v["Type"] for v in national_core["Resources"].values()}
    assert "AWS::SQS::Queue" in kinds
    for kind in kinds - {"AWS::IAM::Role", "AWS::IAM::ManagedPolicy"}:  # trusts' roles grow with trusts
        assert len(resources(national_core, kind)) == len(resources(dev_core, kind)), kind
    trust_roles = [
        r for r in resources(national_core, "AWS::IAM::Role").values() if "-upload-" in r["Properties"]["RoleName"]
    ]
    assert len(trust_roles) == len(registry_of(national).trusts)


def test_only_registry_authorities_get_queues(national):
    registry = registry_of(national)
    prefix = "birthnotify-prod-authority"
    queues = {
        v["Properties"]["QueueName"]
        for t in national.templates.values()
        for v in resources(t, "AWS::SQS::Queue").values()
        if v["Properties"]["QueueName"].startswith(prefix + "-")
    }
    assert queues == {authority_queue_name(prefix, a.gss_code) for a in registry.authorities}
    # Districts and ended councils are in the councils data, not in the registry: no queue for any of them.
    others = {r["gss_code"] for r in councils()} - {a.gss_code for a in registry.authorities}
    assert len(others) > 200 and not {authority_queue_name(prefix, code) for code in others} & queues


def test_the_ingest_policy_is_the_same_size_however_many_authorities(national, dev):
    def statements(synthesis, stage):
        role_id, _ = role_of(synthesis.template, f"birthnotify-{stage}-ingest-function")
        return policy_of(synthesis.template, role_id)

    national_policy, dev_policy = statements(national, "prod"), statements(dev, "dev")
    assert [s["Sid"] for s in national_policy] == [s["Sid"] for s in dev_policy]
    assert len(json.dumps(national_policy)) < 6144  # IAM's managed-policy limit, with room to spare
    [send] = [s for s in national_policy if s["Sid"] == "SendToAuthorityQueues"]
    assert sorted(as_list(send["Action"])) == ["sqs:GetQueueUrl", "sqs:SendMessage"]


def test_every_national_template_passes_cdk_nag_and_cfn_lint(national):
    assert national.findings() == []  # synthesis would have failed on any finding: the report agrees
    for path in national.template_paths:
        assert cfn_lint(path) == [], path.name


def test_checkov_reports_no_failed_check_and_honours_each_reasoned_suppression(national, full):
    synthesized = [*full.template_paths, *national.template_paths]
    report = checkov(synthesized)
    summary, results = report["summary"], report["results"]
    assert summary["parsing_errors"] == 0
    # Every resource of every template was scanned (a template checkov skipped would pass vacuously).
    templates = [json.loads(path.read_text()) for path in synthesized]
    assert summary["resource_count"] == sum(len(t["Resources"]) for t in templates)
    assert [f"{c['check_id']} {c['resource']}" for c in results.get("failed_checks", [])] == []
    assert summary["failed"] == 0
    skips = [skip for t in templates for skip in checkov_skips(t)]
    assert summary["skipped"] == len(skips) > 0
    honoured = sorted((c["check_id"], c["check_result"]["suppress_comment"]) for c in results["skipped_checks"])
    assert honoured == sorted((skip.check, skip.reason) for skip in skips)
