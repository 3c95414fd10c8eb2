"""The local cloud's template adaptation and intrinsic-function resolver, on a small hand-written template
(the e2e tests deploy the real synthesized one)."""

from __future__ import annotations

import pytest
from birthnotify_cli.localcloud.report import DeployReport
from birthnotify_cli.localcloud.template import (
    APPLIED,
    CUSTOM_RESOURCE_WHY,
    LOCAL_RUNTIME,
    SKIPPED,
    Resolver,
    adapt,
)

SUPPORTED = {"AWS::SQS::Queue", "AWS::S3::Bucket", "AWS::Lambda::Function", "AWS::SSM::Parameter"}
TEMPLATE = {
    "Parameters": {
        "BootstrapVersion": {
            "Type": "AWS::SSM::Parameter::Value<String>",
            "Default": "/cdk-bootstrap/hnb659fds/version",
        }
    },
    "Rules": {"CheckBootstrapVersion": {"Assertions": []}},
    "Resources": {
        "Queue": {"Type": "AWS::SQS::Queue", "Properties": {"QueueName": "q"}},
        "Bucket": {"Type": "AWS::S3::Bucket"},
        "Notifications": {
            "Type": "Custom::S3BucketNotifications",
            "DependsOn": ["Queue"],
            "Properties": {"BucketName": {"Ref": "Bucket"}},
        },
        "Seeder": {"Type": "Custom::TableSeeder", "Properties": {"ServiceToken": "x"}},
        "Widget": {"Type": "AWS::Widget::Thing", "Properties": {}},
        "ConfigSet": {"Type": "AWS::SES::ConfigurationSet", "Properties": {"Name": "emails"}},
        "EmailTemplate": {
            "Type": "AWS::SES::Template",
            "Properties": {"Template": {"TemplateName": "emails-template", "SubjectPart": "{{{subject}}}"}},
        },
        "Mapping": {
            "Type": "AWS::Lambda::EventSourceMapping",
            "Properties": {"FunctionName": {"Ref": "Function"}, "BatchSize": 5},
        },
        "Function": {
            "Type": "AWS::Lambda::Function",
            "DependsOn": ["Notifications", "Seeder"],
            "Properties": {
                "Environment": {
                    "Variables": {
                        "SET": {"Ref": "ConfigSet"},
                        "TEMPLATE": {"Ref": "EmailTemplate"},
                        "SEED": {"Fn::GetAtt": ["Seeder", "Result"]},
                        "QUEUE": {"Ref": "Queue"},
                    }
                }
            },
        },
    },
    "Outputs": {
        "SeedOutput": {"Value": {"Ref": "Seeder"}},
        "QueueUrl": {"Value": {"Ref": "Queue"}},
        "SetName": {"Value": {"Ref": "ConfigSet"}},
    },
}


def test_what_moto_cannot_create_is_taken_out_and_each_has_a_treatment():
    adapted = adapt(TEMPLATE, SUPPORTED)
    assert set(adapted.body["Resources"]) == {"Queue", "Bucket", "Function"}
    treatments = {logical: (t.action, t.why) for logical, t in adapted.treatments.items()}
    assert treatments["Notifications"][0] == APPLIED
    assert treatments["Mapping"][0] == LOCAL_RUNTIME
    assert treatments["Seeder"] == (SKIPPED, CUSTOM_RESOURCE_WHY)  # would hang the stack in CREATE_IN_PROGRESS
    assert treatments["Widget"][0] == SKIPPED and "AWS::Widget::Thing" in treatments["Widget"][1]
    assert treatments["ConfigSet"][0] == APPLIED
    assert treatments["EmailTemplate"][0] == APPLIED and "CreateTemplate" in treatments["EmailTemplate"][1]
    assert "Queue" not in adapted.treatments


def test_references_are_kept_deployable():
    adapted = adapt(TEMPLATE, SUPPORTED)
    function = adapted.body["Resources"]["Function"]
    variables = function["Properties"]["Environment"]["Variables"]
    assert variables["SET"] == "emails"  # created before the stack under its own name
    assert variables["TEMPLATE"] == "emails-template"  # the name inside its Template property
    assert variables["SEED"] == "localcloud-skipped-Seeder"
    assert variables["QUEUE"] == {"Ref": "Queue"}
    assert "DependsOn" not in function  # both dependencies were taken out
    assert "SeedOutput" not in adapted.body["Outputs"] and adapted.body["Outputs"]["SetName"]["Value"] == "emails"
    assert "Rules" not in adapted.body
    assert any("CheckBootstrapVersion" in note for note in adapted.notes)
    assert any("Seeder" in note for note in adapted.notes)
    assert TEMPLATE["Resources"]["Function"]["DependsOn"] == ["Notifications", "Seeder"]  # the input is untouched


def test_the_resolver_reads_physical_ids_and_pseudo_parameters():
    physical = {"Queue": "https://sqs.eu-west-2.amazonaws.com/123456789012/q", "Bucket": "bucket-1", "Function": "fn"}
    template = {
        "Resources": {k: v for k, v in TEMPLATE["Resources"].items() if k in physical},
        "Parameters": TEMPLATE["Parameters"],
    }
    resolve = Resolver(template, physical, "Stack")
    assert resolve({"Fn::GetAtt": ["Queue", "Arn"]}) == "arn:aws:sqs:eu-west-2:123456789012:q"
    assert resolve({"Fn::GetAtt": "Queue.QueueName"}) == "q"
    assert resolve({"Fn::Join": ["", [{"Fn::GetAtt": ["Bucket", "Arn"]}, "/*"]]}) == "arn:aws:s3:::bucket-1/*"
    assert (
        resolve({"Fn::Sub": "cdk-${AWS::AccountId}-${AWS::Region}-${Bucket}-${Function.Arn}-${!Literal}"})
        == "cdk-123456789012-eu-west-2-bucket-1-arn:aws:lambda:eu-west-2:123456789012:function:fn-${Literal}"
    )
    assert resolve({"Fn::Sub": ["${A}/x", {"A": {"Ref": "Bucket"}}]}) == "bucket-1/x"
    assert resolve({"Fn::Select": [1, {"Fn::Split": ["/", "a/b/c"]}]}) == "b"
    assert resolve({"Ref": "BootstrapVersion"}) == "/cdk-bootstrap/hnb659fds/version"
    assert resolve({"A": [{"Ref": "AWS::NoValue"}, "x"], "B": {"Ref": "AWS::NoValue"}}) == {"A": ["x"]}
    with pytest.raises(KeyError, match="Fn::If"):
        resolve({"Fn::If": ["Cond", "a", "b"]})
    with pytest.raises(KeyError, match="Queue.Nope"):
        resolve({"Fn::GetAtt": ["Queue", "Nope"]})


def test_the_report_groups_items_and_names_them_when_few():
    report = DeployReport(created=3, seconds=1.25)
    report.add("PolicyA", "AWS::SQS::QueuePolicy", APPLIED, "applied with SetQueueAttributes")
    for n in range(3):
        report.add(f"Alarm{n}", "AWS::CloudWatch::Alarm", APPLIED, "stored, never fires")
    report.add("Seeder", "Custom::TableSeeder", SKIPPED, CUSTOM_RESOURCE_WHY)
    report.add("", "", "not-emulated", "IAM is not enforced")
    lines = report.lines()
    assert lines[0].startswith("3 resources created") and "1.2 s" in lines[0]
    assert "applied: PolicyA (AWS::SQS::QueuePolicy): applied with SetQueueAttributes" in lines
    assert "applied: 3 AWS::CloudWatch::Alarm: stored, never fires" in lines
    assert f"skipped: Seeder (Custom::TableSeeder): {CUSTOM_RESOURCE_WHY}" in lines
    assert "not-emulated: local cloud: IAM is not enforced" in lines
    assert [i.logical_id for i in report.skipped] == ["Seeder"] and len(report.applied) == 4
