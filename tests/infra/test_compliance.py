"""Compliance of the stack with every optional resource (prod, GOV.UK Notify, reviewer role): each finding
of cdk-nag and CDK's validation has a reasoned acknowledgement, each acknowledgement still matches a
finding, checkov reports no failed check and honours each reasoned suppression, the document lists the
acknowledgements and the suppressions, cfn-lint is clean, and prod keeps its data."""

from __future__ import annotations

import json

import pytest
from template_query import arn, cfn_lint, checkov, key_id, one, policy_of, queue, resources, role_of

from infra.docs import DOC, render
from infra.nag import PACKS, checkov_skips, covers

pytestmark = pytest.mark.infra


def test_every_finding_is_acknowledged_and_every_acknowledgement_matches_a_finding(full):
    findings, acknowledgements = full.findings(), full.acknowledgements()
    assert findings, "an audit synthesis reports the acknowledged findings"
    unacknowledged = [f for f in findings if not any(covers(a, f) for a in acknowledgements)]
    unused = [a for a in acknowledgements if not any(covers(a, f) for f in findings)]
    assert unacknowledged == []
    assert unused == []
    assert {f.plugin for f in findings} <= set(PACKS)  # nothing from CDK's own validation or annotations


def test_acknowledgements_name_a_pack_and_give_a_specific_reason(full):
    for ack in full.acknowledgements():
        assert ack.rule.split("-", 1)[0] in {"AwsSolutions", "HIPAA.Security", "NIST.800.53.R5"}, ack
        assert len(ack.reason) >= 40 and ack.reason.endswith("."), ack


def test_the_document_lists_exactly_these_acknowledgements_and_checkov_suppressions(full):
    current = DOC.read_text(encoding="utf-8")
    assert full.checkov_skips(), "the full synthesis carries checkov suppressions"
    assert render(current, full.acknowledgements(), full.checkov_skips()) == current, (
        "run: python -m infra.docs --write"
    )


def test_every_checkov_suppression_names_a_check_and_gives_a_specific_reason(full):
    for skip in full.checkov_skips():
        assert skip.check.startswith("CKV_AWS_") and len(skip.reason) >= 40 and skip.reason.endswith("."), skip


def test_checkov_reports_no_failed_check_and_honours_each_reasoned_suppression(full):
    report = checkov([full.template_path])
    summary, results = report["summary"], report["results"]
    assert summary["parsing_errors"] == 0
    # Every resource was scanned (a template checkov skipped would pass vacuously).
    assert summary["resource_count"] == len(full.template["Resources"])
    assert [f"{c['check_id']} {c['resource']}" for c in results.get("failed_checks", [])] == []
    assert summary["failed"] == 0
    skips = checkov_skips(full.template)
    honoured = sorted((c["check_id"], c["check_result"]["suppress_comment"]) for c in results["skipped_checks"])
    assert honoured == sorted((skip.check, skip.reason) for skip in skips) and skips


def test_the_full_template_passes_cfn_lint_without_warnings(full):
    assert cfn_lint(full.template_path) == []


def test_prod_retains_every_resource_that_holds_data(full):
    t = full.template
    for kind in (
        "AWS::S3::Bucket",
        "AWS::KMS::Key",
        "AWS::DynamoDB::Table",
        "AWS::SQS::Queue",
        "AWS::Logs::LogGroup",
        "AWS::SecretsManager::Secret",
    ):
        found = resources(t, kind)
        assert found, kind
        for logical_id, value in found.items():
            assert (value["DeletionPolicy"], value["UpdateReplacePolicy"]) == ("Retain", "Retain"), logical_id
    assert one(t, "AWS::DynamoDB::Table")[1]["Properties"]["DeletionProtectionEnabled"] is True


def test_the_notify_api_key_is_readable_by_notify_only(full):
    t = full.template
    secret_id, secret = one(t, "AWS::SecretsManager::Secret")
    assert secret["Properties"]["Name"] == "birthnotify-prod/govuk-notify-api-key"
    assert secret["Properties"]["KmsKeyId"] == arn(key_id(t, "KeysOps"))
    variables = one(t, "AWS::Lambda::Function", FunctionName="birthnotify-prod-notify")[1]["Properties"][
        "Environment"
    ]["Variables"]
    assert variables["NOTIFY_API_KEY_SECRET_ID"] == {"Ref": secret_id}
    assert variables["EMAIL_TRANSPORT"] == "notify"
    readers = []
    for value in resources(t, "AWS::IAM::ManagedPolicy").values():
        for statement in value["Properties"]["PolicyDocument"]["Statement"]:
            if "secretsmanager" in json.dumps(statement["Action"]):
                readers.append(
                    (value["Properties"]["ManagedPolicyName"], statement["Action"], statement["Resource"])
                )
    assert readers == [
        ("birthnotify-prod-notify-function", "secretsmanager:GetSecretValue", {"Ref": secret_id})
    ]


def test_the_held_reviewer_role_is_limited_to_the_held_queue_and_key(full):
    t = full.template
    role_id, role = role_of(t, "birthnotify-prod-held-reviewer")
    principal = role["Properties"]["AssumeRolePolicyDocument"]["Statement"][0]["Principal"]["AWS"]
    assert principal == "arn:aws:iam::123456789012:role/birth-notifications-reviewer"
    held, _ = queue(t, "birthnotify-prod-held")
    assert {s["Sid"]: s["Resource"] for s in policy_of(t, role_id)} == {
        "ReviewHeldQueue": arn(held),
        "DecryptHeldQueue": arn(key_id(t, "KeysHeld")),
    }
