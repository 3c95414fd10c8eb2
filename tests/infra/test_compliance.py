"""Compliance of the app with every optional resource (prod, GOV.UK Notify, reviewer role): each finding
of cdk-nag and CDK's validation has a reasoned acknowledgement, each acknowledgement still matches a
finding, the document lists them and the checkov suppressions, cfn-lint is clean, and prod keeps its data
(checkov itself runs once, in test_national)."""

from __future__ import annotations

import json

import pytest
from template_query import arn, as_list, cfn_lint, key_id, one, policy_of, resources, role_of

from infra.docs import DOC, DOCUMENTED_CONTEXT, render
from infra.nag import PACKS, covers

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


def test_the_full_templates_pass_cfn_lint_without_warnings(full):
    for path in full.template_paths:
        assert cfn_lint(path) == [], path.name


def test_prod_retains_every_resource_that_holds_data(full):
    t = {"Resources": {k: v for template in full.templates.values() for k, v in template["Resources"].items()}}
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
    tables = resources(t, "AWS::DynamoDB::Table")
    assert len(tables) == 2  # the state table and the held store
    assert all(table["Properties"]["DeletionProtectionEnabled"] is True for table in tables.values())


def test_removing_an_authority_from_a_prod_registry_never_deletes_its_queue_or_key(full):
    # Its resources leave the template (or its whole stack leaves the app): CloudFormation then retains them.
    assert full.authority_stacks
    for stack in full.authority_stacks:
        t = full.template_of(stack)
        for kind, per_authority in (("AWS::SQS::Queue", 2), ("AWS::KMS::Key", 1)):  # queue and DLQ; key
            found = resources(t, kind)
            assert len(found) == per_authority * len(stack.authorities.by_gss), (stack.stack_name, kind)
            for logical_id, value in found.items():
                assert (value["DeletionPolicy"], value["UpdateReplacePolicy"]) == ("Retain", "Retain"), logical_id


def test_each_secret_is_readable_by_the_functions_that_use_it_only(full):
    t = full.template
    secret_id, secret = one(t, "AWS::SecretsManager::Secret", Name="birthnotify-prod/govuk-notify-api-key")
    mesh_id, mesh = one(t, "AWS::SecretsManager::Secret", Name="birthnotify-prod/mesh")
    ledger_id, ledger = one(t, "AWS::SecretsManager::Secret", Name="birthnotify-prod/ledger-hmac-key")
    assert ledger["Properties"]["KmsKeyId"] == arn(key_id(t, "KeysLedger"))
    for value in (secret, mesh):
        assert value["Properties"]["KmsKeyId"] == arn(key_id(t, "KeysOps"))
    variables = one(t, "AWS::Lambda::Function", FunctionName="birthnotify-prod-notify")[1]["Properties"]["Environment"][
        "Variables"
    ]
    assert variables["NOTIFY_API_KEY_SECRET_ID"] == {"Ref": secret_id}
    assert variables["MESH_SECRET_ID"] == {"Ref": mesh_id}
    assert variables["EMAIL_TRANSPORT"] == "notify"
    readers = []
    for value in resources(t, "AWS::IAM::ManagedPolicy").values():
        for statement in value["Properties"]["PolicyDocument"]["Statement"]:
            if "secretsmanager" in json.dumps(statement["Action"]):
                readers.append(
                    (
                        value["Properties"]["ManagedPolicyName"],
                        statement["Action"],
                        sorted(json.dumps(r) for r in as_list(statement["Resource"])),
                    )
                )
    assert sorted(readers) == sorted(
        [
            (
                "birthnotify-prod-notify-function",
                "secretsmanager:GetSecretValue",
                sorted(json.dumps({"Ref": i}) for i in (mesh_id, secret_id)),
            ),
            ("birthnotify-prod-mesh-function", "secretsmanager:GetSecretValue", [json.dumps({"Ref": mesh_id})]),
            ("birthnotify-prod-ingest-function", "secretsmanager:GetSecretValue", [json.dumps({"Ref": ledger_id})]),
            ("birthnotify-prod-ledger-auditor", "secretsmanager:GetSecretValue", [json.dumps({"Ref": ledger_id})]),
            ("birthnotify-prod-held-reviewer", "secretsmanager:GetSecretValue", [json.dumps({"Ref": ledger_id})]),
        ]
    )


def test_the_held_reviewer_role_is_limited_to_the_held_store_and_key_and_what_release_and_redelivery_need(full):
    t = full.template
    role_id, role = role_of(t, "birthnotify-prod-held-reviewer")
    principal = role["Properties"]["AssumeRolePolicyDocument"]["Statement"][0]["Principal"]["AWS"]
    assert [principal] == DOCUMENTED_CONTEXT["held_reviewer_principals"]
    held, _ = one(t, "AWS::DynamoDB::Table", TableName="birthnotify-prod-held")
    statements = {s["Sid"]: s for s in policy_of(t, role_id)}
    assert statements["ReviewHeldStore"]["Resource"] == [arn(held), {"Fn::Join": ["", [arn(held), "/index/open"]]}]
    assert statements["UseHeldKey"]["Resource"] == arn(key_id(t, "KeysHeld"))
    # Release and re-delivery: sends to the authority queues (never their DLQs) and the file-events queue, and
    # reads of the reports and the uploads they name; nothing else.
    assert set(statements) == {
        "ReviewHeldStore",
        "UseHeldKey",
        "SendToAuthorityQueues",
        "SendFileEvents",
        "UsePipelineKey",
        "ReadProgress",
        "ListReportsAndUploads",
        "ReadReportsAndUploads",
        "DecryptReportsAndUploads",
        "ReadStackOutputs",
        "WriteLedger",
        "EncryptLedger",
        "ReadLedgerKey",
    }  # its actions' ledger entries
    ledger = next(k for k in resources(t, "AWS::S3::Bucket") if k.startswith("LedgerBucket"))
    assert statements["WriteLedger"]["Resource"] == {"Fn::Join": ["", [arn(ledger), "/ledger/*"]]}
    assert "birthnotify-prod-authority-?????????.fifo" in json.dumps(statements["SendToAuthorityQueues"]["Resource"])
    assert sorted(statements["SendToAuthorityQueues"]["Action"]) == ["sqs:GetQueueUrl", "sqs:SendMessage"]
    # Each authority's key lets the role encrypt for its queue (the grant the ingest function has).
    leeds = full.authority_template("E08000035")
    policy = leeds["Resources"][key_id(leeds, "AuthoritiesE08000035Key")]["Properties"]["KeyPolicy"]
    [grant] = [s for s in policy["Statement"] if s.get("Sid") == "IngestSendsToThisAuthority"]
    assert len(grant["Principal"]["AWS"]) == 2 and "birthnotify-prod-held-reviewer" in json.dumps(grant["Principal"])


def test_the_notify_function_reads_only_the_held_stores_open_index(full):
    """The daily reminder counts held records from the index that projects no personal data; the records
    themselves stay out of the notify function's reach."""
    t = full.template
    role_id, _ = role_of(t, "birthnotify-prod-notify-function")
    held, _ = one(t, "AWS::DynamoDB::Table", TableName="birthnotify-prod-held")
    on_held = [
        s
        for s in policy_of(t, role_id)
        if arn(held) == s["Resource"]
        or arn(held) in as_list(s["Resource"])
        or "/index/open" in json.dumps(s["Resource"])
    ]
    assert [(s["Sid"], s["Action"], s["Resource"]) for s in on_held] == [
        ("CountHeldRecords", "dynamodb:Query", {"Fn::Join": ["", [arn(held), "/index/open"]]})
    ]


def test_the_ledger_auditor_role_may_read_the_ledger_and_its_key_and_nothing_else(full):
    t = full.template
    role_id, role = role_of(t, "birthnotify-prod-ledger-auditor")
    principal = role["Properties"]["AssumeRolePolicyDocument"]["Statement"][0]["Principal"]["AWS"]
    assert [principal] == DOCUMENTED_CONTEXT["ledger_auditor_principals"]
    ledger = next(k for k in resources(t, "AWS::S3::Bucket") if k.startswith("LedgerBucket"))
    secret_id, _ = one(t, "AWS::SecretsManager::Secret", Name="birthnotify-prod/ledger-hmac-key")
    statements = {s["Sid"]: s for s in policy_of(t, role_id)}
    assert {sid: (s["Action"], s["Resource"]) for sid, s in statements.items()} == {
        "ListLedger": ("s3:ListBucket", arn(ledger)),
        "ReadLedger": ("s3:GetObject", {"Fn::Join": ["", [arn(ledger), "/ledger/*"]]}),
        "DecryptLedger": ("kms:Decrypt", arn(key_id(t, "KeysLedger"))),
        "ReadLedgerKey": ("secretsmanager:GetSecretValue", {"Ref": secret_id}),
    }
