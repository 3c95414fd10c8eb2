"""The dev app as ``make synth`` produces it (the core stack and one stack per shard of authorities): every
resource, its encryption, and who may touch it."""

from __future__ import annotations

import json

import pytest
from aws_cdk.assertions import Match
from birthnotify.domain.registry import load_registry
from birthnotify.shared.names import authority_queue_name
from birthnotify.shared.settings import INGEST_ENV, MESH_ENV, NOTIFY_ENV
from template_query import (
    arn,
    as_list,
    cfn_lint,
    key_id,
    one,
    policy_of,
    queue,
    ref,
    resources,
    role_of,
    trusted_principals,
)

from infra.config import DEFAULT_REGISTRY

pytestmark = pytest.mark.infra

REGISTRY = load_registry(DEFAULT_REGISTRY)
POWERTOOLS = {"POWERTOOLS_SERVICE_NAME", "POWERTOOLS_METRICS_NAMESPACE"}


# -- storage ---------------------------------------------------------------------------------------------


def function(template: dict, name: str) -> dict:
    return one(template, "AWS::Lambda::Function", FunctionName=name)[1]["Properties"]


def bucket_ids(t: dict) -> dict[str, str]:
    return {
        name: next(k for k in resources(t, "AWS::S3::Bucket") if k.startswith(prefix))
        for name, prefix in (
            ("Inbound", "StorageInbound"),
            ("Reports", "StorageReports"),
            ("AccessLogs", "StorageAccessLogs"),
            ("Ledger", "LedgerBucket"),
        )
    }


def test_data_buckets_are_encrypted_with_their_own_keys_and_log_access(dev):
    t = dev.template
    buckets = bucket_ids(t)
    for name, key in (("Inbound", "KeysInbound"), ("Reports", "KeysReports")):
        props = t["Resources"][buckets[name]]["Properties"]
        rule = props["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]
        assert rule["ServerSideEncryptionByDefault"] == {
            "SSEAlgorithm": "aws:kms",
            "KMSMasterKeyID": arn(key_id(t, key)),
        }
        assert rule["BucketKeyEnabled"] is False  # per-object encryption context for the trusts' conditions
        assert props["LoggingConfiguration"]["DestinationBucketName"] == ref(buckets["AccessLogs"])
    logs = t["Resources"][buckets["AccessLogs"]]["Properties"]
    assert logs["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"] == {
        "SSEAlgorithm": "AES256"
    }  # the only encryption S3 server access logging can deliver to


def test_every_bucket_is_private_versioned_and_owner_enforced(dev):
    for value in resources(dev.template, "AWS::S3::Bucket").values():
        props = value["Properties"]
        assert props["PublicAccessBlockConfiguration"] == {
            "BlockPublicAcls": True,
            "BlockPublicPolicy": True,
            "IgnorePublicAcls": True,
            "RestrictPublicBuckets": True,
        }
        assert props["VersioningConfiguration"] == {"Status": "Enabled"}
        assert props["OwnershipControls"] == {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]}
        assert value["DeletionPolicy"] == "Delete"  # dev; prod retains (test_compliance)


def test_every_bucket_policy_denies_anything_but_tls_1_2(dev):
    t = dev.template
    policies = {
        v["Properties"]["Bucket"]["Ref"]: v["Properties"]["PolicyDocument"]["Statement"]
        for v in resources(t, "AWS::S3::BucketPolicy").values()
    }
    assert set(policies) == set(bucket_ids(t).values())
    for statements in policies.values():
        denies = [s for s in statements if s["Effect"] == "Deny" and s["Principal"] == {"AWS": "*"}]
        assert any(
            s.get("Condition") == {"Bool": {"aws:SecureTransport": "false"}} and s["Action"] == "s3:*" for s in denies
        )
        assert any(s.get("Condition") == {"NumericLessThan": {"s3:TlsVersion": 1.2}} for s in denies)
        assert not [s for s in statements if s["Effect"] == "Allow" and s.get("Principal") in ("*", {"AWS": "*"})]


def test_raw_uploads_expire_and_the_inbound_bucket_refuses_other_keys(dev):
    t = dev.template
    inbound = t["Resources"][bucket_ids(t)["Inbound"]]["Properties"]
    rules = {r["Id"]: r for r in inbound["LifecycleConfiguration"]["Rules"]}
    assert rules["expire-raw-uploads"]["ExpirationInDays"] == 30
    assert rules["expire-raw-uploads"]["NoncurrentVersionExpiration"] == {"NoncurrentDays": 1}
    policy = next(
        v
        for v in resources(t, "AWS::S3::BucketPolicy").values()
        if v["Properties"]["Bucket"] == ref(bucket_ids(t)["Inbound"])
    )
    deny_key = next(s for s in policy["Properties"]["PolicyDocument"]["Statement"] if s.get("Sid") == "DenyOtherKmsKey")
    assert deny_key["Condition"]["StringNotEquals"]["s3:x-amz-server-side-encryption-aws-kms-key-id"] == arn(
        key_id(t, "KeysInbound")
    )
    # Only a request that names another key is refused; one naming none gets the bucket's default key.
    assert deny_key["Condition"]["Null"] == {"s3:x-amz-server-side-encryption-aws-kms-key-id": "false"}


def test_uploads_under_inbound_notify_the_ingest_queue_through_the_only_custom_resource(dev):
    t = dev.template
    kinds = {v["Type"] for v in t["Resources"].values()}
    custom = {k for k in kinds if k.startswith("Custom::") or k == "AWS::CloudFormation::CustomResource"}
    assert custom == {"Custom::S3BucketNotifications"}
    ingest_queue, _ = queue(t, "birthnotify-dev-ingest")
    _, notification = one(t, "Custom::S3BucketNotifications")
    assert notification["Properties"]["BucketName"] == ref(bucket_ids(t)["Inbound"])
    assert notification["Properties"]["NotificationConfiguration"] == {
        "QueueConfigurations": [
            {
                "Events": ["s3:ObjectCreated:*"],
                "QueueArn": arn(ingest_queue),
                "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": "inbound/"}]}},
            }
        ]
    }
    # S3 can only notify a queue encrypted with a customer-managed key other than the bucket's own.
    assert t["Resources"][ingest_queue]["Properties"]["KmsMasterKeyId"] == arn(key_id(t, "KeysPipeline"))
    handler_role = next(
        k
        for k, v in resources(t, "AWS::IAM::Role").items()
        if v["Properties"].get("RoleName") == "birthnotify-dev-s3-notifications"
    )
    assert "ManagedPolicyArns" not in t["Resources"][handler_role]["Properties"]
    assert policy_of(t, handler_role) == [
        {
            "Sid": "PutInboundNotification",
            "Effect": "Allow",
            "Action": "s3:PutBucketNotification",
            "Resource": arn(bucket_ids(t)["Inbound"]),
        }
    ]


# -- queues, keys ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["core", "authorities"])
def test_every_queue_is_kms_encrypted_tls_only_and_has_a_dlq_or_is_one(dev, which):
    for t in [dev.template] if which == "core" else [dev.template_of(s) for s in dev.authority_stacks]:
        _queues_are_encrypted_tls_only_with_dlqs(t)


def _queues_are_encrypted_tls_only_with_dlqs(t: dict) -> None:
    queues = resources(t, "AWS::SQS::Queue")
    dlq_ids = {
        q["Properties"]["RedrivePolicy"]["deadLetterTargetArn"]["Fn::GetAtt"][0]
        for q in queues.values()
        if "RedrivePolicy" in q["Properties"]
    }
    function_dlqs = {
        f["Properties"]["DeadLetterConfig"]["TargetArn"]["Fn::GetAtt"][0]
        for f in resources(t, "AWS::Lambda::Function").values()
        if "DeadLetterConfig" in f["Properties"]
    }
    tls_only = set()
    for policy in resources(t, "AWS::SQS::QueuePolicy").values():
        if any(
            s["Effect"] == "Deny" and s.get("Condition") == {"Bool": {"aws:SecureTransport": "false"}}
            for s in policy["Properties"]["PolicyDocument"]["Statement"]
        ):
            tls_only.update(q["Ref"] for q in policy["Properties"]["Queues"])
    for logical_id, value in queues.items():
        kms = value["Properties"]["KmsMasterKeyId"]
        assert kms["Fn::GetAtt"][0] in resources(t, "AWS::KMS::Key"), logical_id
        assert logical_id in tls_only, logical_id
        assert "RedrivePolicy" in value["Properties"] or logical_id in dlq_ids | function_dlqs, logical_id


def test_every_key_is_customer_managed_and_rotates(dev):
    keys = {k: v for t in dev.templates.values() for k, v in resources(t, "AWS::KMS::Key").items()}
    assert len(resources(dev.template, "AWS::KMS::Key")) == 6
    assert len(keys) == 6 + len(REGISTRY.authorities)
    for value in keys.values():
        assert value["Properties"]["EnableKeyRotation"] is True
        assert value["Properties"]["RotationPeriodInDays"] == 365


def test_each_authority_has_a_fifo_queue_named_as_ingest_derives_it_with_its_own_key_and_dlq(dev):
    variables = function(dev.template, "birthnotify-dev-ingest")["Environment"]["Variables"]
    prefix = variables["AUTHORITY_QUEUE_PREFIX"]
    # Ingest builds each queue's URL as this base and the queue's name: this account's, in this region.
    assert variables["QUEUE_URL_BASE"] == {
        "Fn::Join": [
            "",
            [
                "https://sqs.",
                {"Ref": "AWS::Region"},
                ".",
                {"Ref": "AWS::URLSuffix"},
                "/",
                {"Ref": "AWS::AccountId"},
                "/",
            ],
        ]
    }
    keys_used = set()
    for authority in REGISTRY.authorities:
        t = dev.authority_template(authority.gss_code)
        logical_id, value = queue(t, authority_queue_name(prefix, authority.gss_code))
        props = value["Properties"]
        assert props["FifoQueue"] is True and props["ContentBasedDeduplication"] is False
        key = props["KmsMasterKeyId"]["Fn::GetAtt"][0]
        assert key.startswith(f"Authorities{authority.gss_code}Key")
        dlq = t["Resources"][props["RedrivePolicy"]["deadLetterTargetArn"]["Fn::GetAtt"][0]]["Properties"]
        assert dlq["FifoQueue"] is True and dlq["KmsMasterKeyId"] == props["KmsMasterKeyId"]
        assert dlq["QueueName"] == f"birthnotify-dev-dlq-authority-{authority.gss_code}.fifo"
        keys_used.add(key)
    assert len(keys_used) == len(REGISTRY.authorities)


def test_each_authority_consumer_role_is_limited_to_its_own_queue_and_key(dev):
    with_consumers = [a for a in REGISTRY.authorities if a.consumer_principals]
    assert with_consumers, "the shipped registry should exercise consumer roles"
    for authority in REGISTRY.authorities:
        t = dev.authority_template(authority.gss_code)
        name = f"birthnotify-dev-consumer-{authority.gss_code}"
        roles = [k for k, v in resources(t, "AWS::IAM::Role").items() if v["Properties"].get("RoleName") == name]
        if not authority.consumer_principals:
            assert roles == []
            continue
        role_id, role = role_of(t, name)
        assert sorted(trusted_principals(role)) == sorted(authority.consumer_principals)
        own_queue, _ = queue(t, authority_queue_name("birthnotify-dev-authority", authority.gss_code))
        own_key = key_id(t, f"Authorities{authority.gss_code}Key")
        statements = policy_of(t, role_id)
        assert {s["Sid"]: (sorted(as_list(s["Action"])), s["Resource"]) for s in statements} == {
            "ConsumeOwnQueue": (
                ["sqs:DeleteMessage", "sqs:GetQueueAttributes", "sqs:ReceiveMessage"],
                arn(own_queue),
            ),
            "DecryptOwnQueue": (["kms:Decrypt"], arn(own_key)),
        }
        assert "ManagedPolicyArns" not in role["Properties"] and "Policies" not in role["Properties"]


def test_ingest_may_encrypt_for_every_authority_and_nobody_else_is_named_in_authority_keys(dev):
    role_of(dev.template, "birthnotify-dev-ingest-function")  # the core stack names the role ...
    ingest_role = {  # ... so that each authority stack can name it by ARN, without an export
        "Fn::Join": [
            "",
            ["arn:", ref("AWS::Partition"), ":iam::", ref("AWS::AccountId"), ":role/birthnotify-dev-ingest-function"],
        ]
    }
    for authority in REGISTRY.authorities:
        t = dev.authority_template(authority.gss_code)
        policy = t["Resources"][key_id(t, f"Authorities{authority.gss_code}Key")]["Properties"]["KeyPolicy"]
        grants = [s for s in policy["Statement"] if s.get("Sid") == "IngestSendsToThisAuthority"]
        assert len(grants) == 1 and grants[0]["Principal"] == {"AWS": ingest_role}
        assert sorted(grants[0]["Action"]) == ["kms:Decrypt", "kms:GenerateDataKey"]
        others = [s for s in policy["Statement"] if s.get("Sid") != "IngestSendsToThisAuthority"]
        assert [s["Principal"] for s in others] == [
            {
                "AWS": {
                    "Fn::Join": [
                        "",
                        ["arn:", ref("AWS::Partition"), ":iam::", ref("AWS::AccountId"), ":root"],
                    ]
                }
            }
        ]


def test_each_trust_role_is_limited_to_its_own_prefixes(dev):
    t = dev.template
    inbound, reports = bucket_ids(t)["Inbound"], bucket_ids(t)["Reports"]
    for trust in REGISTRY.trusts:
        role_id, role = role_of(t, f"birthnotify-dev-upload-{trust.ods_code}")
        assert sorted(trusted_principals(role)) == sorted(trust.uploader_principals)
        ods = trust.ods_code
        by_sid = {s["Sid"]: s for s in policy_of(t, role_id)}
        assert set(by_sid) == {
            "UploadUnderOwnPrefix",
            "EncryptOwnUploads",
            "ReadOwnReports",
            "ListOwnReports",
            "DecryptOwnReports",
        }
        own_uploads = {"Fn::Join": ["", [arn(inbound), f"/inbound/{ods}/*"]]}
        own_reports = {"Fn::Join": ["", [arn(reports), f"/reports/{ods}/*"]]}
        assert sorted(by_sid["UploadUnderOwnPrefix"]["Action"]) == ["s3:AbortMultipartUpload", "s3:PutObject"]
        assert by_sid["UploadUnderOwnPrefix"]["Resource"] == own_uploads
        assert by_sid["EncryptOwnUploads"]["Resource"] == arn(key_id(t, "KeysInbound"))
        assert by_sid["EncryptOwnUploads"]["Condition"]["StringLike"] == {
            "kms:EncryptionContext:aws:s3:arn": own_uploads
        }
        assert by_sid["ReadOwnReports"] == {
            "Sid": "ReadOwnReports",
            "Effect": "Allow",
            "Action": "s3:GetObject",
            "Resource": own_reports,
        }
        assert by_sid["ListOwnReports"]["Condition"] == {
            "StringLike": {"s3:prefix": [f"reports/{ods}/", f"reports/{ods}/*"]}
        }
        assert by_sid["DecryptOwnReports"]["Condition"]["StringLike"] == {
            "kms:EncryptionContext:aws:s3:arn": own_reports
        }


# -- state -----------------------------------------------------------------------------------------------


def test_state_table_matches_what_the_code_uses(dev_template, dev):
    dev_template.has_resource_properties(
        "AWS::DynamoDB::Table",
        {
            "TableName": "birthnotify-dev-state",
            "KeySchema": [{"AttributeName": "id", "KeyType": "HASH"}],
            "AttributeDefinitions": [{"AttributeName": "id", "AttributeType": "S"}],
            "TimeToLiveSpecification": {"AttributeName": "expiration", "Enabled": True},
            "BillingMode": "PAY_PER_REQUEST",
            "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True},
            "SSESpecification": {
                "SSEEnabled": True,
                "SSEType": "KMS",
                "KMSMasterKeyId": arn(key_id(dev.template, "KeysPipeline")),
            },
        },
    )


def test_the_held_store_is_a_table_of_its_own_under_the_held_key_with_an_index_free_of_personal_data(dev):
    t = dev.template
    table_id, table = one(t, "AWS::DynamoDB::Table", TableName="birthnotify-dev-held")
    props = table["Properties"]
    assert props["SSESpecification"] == {
        "SSEEnabled": True,
        "SSEType": "KMS",
        "KMSMasterKeyId": arn(key_id(t, "KeysHeld")),
    }
    assert props["TimeToLiveSpecification"] == {"AttributeName": "expiration", "Enabled": True}
    assert props["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    [index] = props["GlobalSecondaryIndexes"]
    assert index["IndexName"] == "open"
    assert index["KeySchema"] == [
        {"AttributeName": "open", "KeyType": "HASH"},
        {"AttributeName": "held_at", "KeyType": "RANGE"},
    ]
    # What the age check (which may read only the index) can see: names of files and councils, no record.
    projected = set(index["Projection"]["NonKeyAttributes"])
    assert index["Projection"]["ProjectionType"] == "INCLUDE"
    assert not projected & {"body", "notification_id", "postcode", "record"}
    # Nothing holds a held record for a limited time any more: no held queue.
    assert not [q for q in resources(t, "AWS::SQS::Queue").values() if "held" in q["Properties"]["QueueName"]]
    assert table_id in json.dumps(function(t, "birthnotify-dev-ingest")["Environment"])


# -- functions -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "expected"), [("ingest", INGEST_ENV), ("notify", NOTIFY_ENV), ("mesh", MESH_ENV)])
def test_function_environment_is_exactly_what_the_handler_reads(dev, name, expected):
    variables = function(dev.template, f"birthnotify-dev-{name}")["Environment"]["Variables"]
    assert set(variables) - POWERTOOLS == {env.value for env in expected}
    assert POWERTOOLS <= set(variables)
    assert variables["REGISTRY_PATH"] == "/opt/config/registry.toml"


def test_functions_run_python313_on_arm64_with_layers_tracing_and_their_own_log_groups(dev):
    t = dev.template
    layers = resources(t, "AWS::Lambda::LayerVersion")
    assert len(layers) == 3
    for value in layers.values():
        assert value["Properties"]["CompatibleRuntimes"] == ["python3.13"]
        assert value["Properties"]["CompatibleArchitectures"] == ["arm64"]
    for name in ("ingest", "notify", "mesh"):
        props = function(t, f"birthnotify-dev-{name}")
        assert (props["Runtime"], props["Architectures"], props["Handler"]) == (
            "python3.13",
            ["arm64"],
            "handler.handler",
        )
        assert sorted(layer["Ref"] for layer in props["Layers"]) == sorted(layers)
        assert props["TracingConfig"] == {"Mode": "Active"}
        assert props["LoggingConfig"]["LogFormat"] == "JSON"
        log_group_id = props["LoggingConfig"]["LogGroup"]["Ref"]
        log_group = t["Resources"][log_group_id]["Properties"]
        assert log_group["LogGroupName"] == f"/aws/lambda/birthnotify-dev-{name}"
        assert log_group["RetentionInDays"] == 400
        assert log_group["KmsKeyId"] == arn(key_id(t, "KeysOps"))
    ingest = function(t, "birthnotify-dev-ingest")
    assert (ingest["MemorySize"], ingest["Timeout"]) == (1024, 600)


def test_ingest_consumes_its_queue_in_single_file_batches_with_partial_failures(dev):
    t = dev.template
    ingest_queue, value = queue(t, "birthnotify-dev-ingest")
    assert value["Properties"]["VisibilityTimeout"] == 6 * function(t, "birthnotify-dev-ingest")["Timeout"]
    notify_queue, events = queue(t, "birthnotify-dev-file-events")
    assert events["Properties"]["VisibilityTimeout"] == 6 * function(t, "birthnotify-dev-notify")["Timeout"]
    mappings = {
        v["Properties"]["EventSourceArn"]["Fn::GetAtt"][0]: v["Properties"]
        for v in resources(t, "AWS::Lambda::EventSourceMapping").values()
    }
    assert set(mappings) == {ingest_queue, notify_queue}
    assert mappings[ingest_queue]["BatchSize"] == 1
    assert mappings[ingest_queue]["ScalingConfig"] == {"MaximumConcurrency": 5}
    for mapping in mappings.values():
        assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]


def test_ingest_may_do_what_it_needs_and_nothing_more(dev):
    t = dev.template
    role_id, _ = role_of(t, "birthnotify-dev-ingest-function")
    by_sid = {s["Sid"]: s for s in policy_of(t, role_id)}
    assert set(by_sid) == {
        "WriteOwnLogs",
        "DecryptOwnEnvironment",
        "XRayTracing",
        "ConsumeIngestQueue",
        "ReadUploads",
        "DecryptUploads",
        "WriteReports",
        "EncryptReports",
        "SendToAuthorityQueues",
        "SendFileEvents",
        "WriteHeldStore",
        "UseHeldKey",
        "UsePipelineKey",
        "ReadWriteState",
        "WriteLedger",
        "ReadWriteDestinations",
        "ReadWriteResumeSnapshots",
        "ListLedgerBucket",
        "EncryptLedger",
        "ReadLedgerKey",
    }
    actions = {a for s in by_sid.values() for a in as_list(s["Action"])}
    assert not [a for a in actions if a.endswith("*")]
    assert by_sid["ReadUploads"]["Resource"] == {"Fn::Join": ["", [arn(bucket_ids(t)["Inbound"]), "/inbound/*"]]}
    assert by_sid["WriteReports"]["Resource"] == {"Fn::Join": ["", [arn(bucket_ids(t)["Reports"]), "/reports/*"]]}
    # Exactly the names authority_queue_name gives (a nine-character GSS code, FIFO): no DLQ, no other stage.
    assert json.dumps(by_sid["SendToAuthorityQueues"]["Resource"]).endswith(
        ':birthnotify-dev-authority-?????????.fifo"]]}'
    )
    kms = [s["Resource"] for s in by_sid.values() if any(a.startswith("kms:") for a in as_list(s["Action"]))]
    core_keys = [arn(k) for k in resources(t, "AWS::KMS::Key")]
    assert all(r in core_keys for r in kms)  # no authority key here: each one's key policy names the role
    events, _ = queue(t, "birthnotify-dev-file-events")
    assert by_sid["SendFileEvents"]["Resource"] == arn(events)
    held = arn(one(t, "AWS::DynamoDB::Table", TableName="birthnotify-dev-held")[0])
    # Ingest only adds held records (a batch, or one that must not overwrite): it never reads or changes one.
    assert (by_sid["WriteHeldStore"]["Action"], by_sid["WriteHeldStore"]["Resource"]) == (
        ["dynamodb:BatchWriteItem", "dynamodb:PutItem"],
        held,
    )
    assert by_sid["UseHeldKey"]["Resource"] == arn(key_id(t, "KeysHeld"))
    assert '"dynamodb."' in json.dumps(by_sid["UseHeldKey"]["Condition"]["StringEquals"]["kms:ViaService"])
    state = one(t, "AWS::DynamoDB::Table", TableName="birthnotify-dev-state")[0]
    assert by_sid["ReadWriteState"]["Resource"] == arn(state)
    assert as_list(by_sid["WriteLedger"]["Action"]) == ["s3:PutObject"]  # never read, list or delete entries
    assert by_sid["WriteLedger"]["Resource"] == {"Fn::Join": ["", [arn(bucket_ids(t)["Ledger"]), "/ledger/*"]]}
    assert by_sid["ReadWriteDestinations"]["Resource"] == {
        "Fn::Join": ["", [arn(bucket_ids(t)["Ledger"]), "/destinations/*"]]
    }
    assert by_sid["ReadWriteResumeSnapshots"]["Resource"] == {
        "Fn::Join": ["", [arn(bucket_ids(t)["Ledger"]), "/resume/*"]]
    }
    ledger_key, _ = one(t, "AWS::SecretsManager::Secret", Name="birthnotify-dev/ledger-hmac-key")
    assert by_sid["ReadLedgerKey"]["Resource"] == ref(ledger_key)


def test_bounces_and_complaints_reach_the_operators_topic(dev, dev_template):
    topic, _ = one(dev.template, "AWS::SNS::Topic")
    dev_template.has_resource_properties(
        "AWS::SES::ConfigurationSetEventDestination",
        {
            "EventDestination": Match.object_like(
                {
                    "Enabled": True,
                    "MatchingEventTypes": Match.array_with(["bounce", "complaint", "reject"]),
                    "SnsDestination": {"TopicARN": {"Ref": topic}},
                }
            ),
        },
    )


def test_notify_sends_email_only_as_the_sender_through_the_tls_required_configuration_set(dev, dev_template):
    t = dev.template
    dev_template.has_resource_properties(
        "AWS::SES::ConfigurationSet",
        {"Name": "birthnotify-dev-email", "DeliveryOptions": {"TlsPolicy": "REQUIRE"}},
    )
    dev_template.has_resource_properties(
        "AWS::SES::EmailIdentity",
        {
            "EmailIdentity": "birth-notifications@example.nhs.uk",
            "ConfigurationSetAttributes": {"ConfigurationSetName": Match.any_value()},
        },
    )
    # The stored template the bulk sends fill in: every part one whole field, never HTML-escaped by SES.
    template_id, template = one(t, "AWS::SES::Template")
    assert template["Properties"]["Template"] == {
        "TemplateName": "birthnotify-dev-email",
        "SubjectPart": "{{{subject}}}",
        "TextPart": "{{{text}}}",
        "HtmlPart": "{{{html}}}",
    }
    assert function(t, "birthnotify-dev-notify")["Environment"]["Variables"]["SES_TEMPLATE"] == ref(template_id)
    role_id, _ = role_of(t, "birthnotify-dev-notify-function")
    by_sid = {s["Sid"]: s for s in policy_of(t, role_id)}
    ses = by_sid["SendEmailAsSenderOnly"]
    assert as_list(ses["Action"]) == ["ses:SendBulkTemplatedEmail"]  # the one way the notifier sends mail
    resources_text = [json.dumps(r) for r in ses["Resource"]]
    assert len(resources_text) == 3
    assert any(":identity/birth-notifications@example.nhs.uk" in text for text in resources_text)
    assert any(":configuration-set/" in text for text in resources_text)
    assert any(":template/birthnotify-dev-email" in text for text in resources_text)
    assert ses["Condition"] == {"StringEquals": {"ses:FromAddress": "birth-notifications@example.nhs.uk"}}
    # ses transport: no API key secret; the MESH secret only (reports back by MESH).
    mesh_secret, _ = one(t, "AWS::SecretsManager::Secret", Name="birthnotify-dev/mesh")
    assert as_list(by_sid["ReadSecrets"]["Resource"]) == [ref(mesh_secret)]
    assert sorted(s["Properties"]["Name"] for s in resources(t, "AWS::SecretsManager::Secret").values()) == [
        "birthnotify-dev/ledger-hmac-key",
        "birthnotify-dev/mesh",
    ]
    assert function(t, "birthnotify-dev-notify")["Environment"]["Variables"]["NOTIFY_API_KEY_SECRET_ID"] == ""


def test_notify_runs_daily_for_digests_and_sends_async_failures_to_a_dlq(dev):
    t = dev.template
    notify_id = one(t, "AWS::Lambda::Function", FunctionName="birthnotify-dev-notify")[0]
    _, rule = one(t, "AWS::Events::Rule", Name="birthnotify-dev-digest")
    assert rule["Properties"]["ScheduleExpression"] == "cron(0 7 * * ? *)"
    assert rule["Properties"]["Targets"][0]["Arn"] == arn(notify_id)
    dlq, _ = queue(t, "birthnotify-dev-dlq-notify-async")
    assert function(t, "birthnotify-dev-notify")["DeadLetterConfig"] == {"TargetArn": arn(dlq)}


def test_notify_reads_reports_to_send_them_back_by_mesh_and_nothing_else_of_the_buckets(dev):
    t = dev.template
    role_id, _ = role_of(t, "birthnotify-dev-notify-function")
    by_sid = {s["Sid"]: s for s in policy_of(t, role_id)}
    assert by_sid["ReadReportsForMesh"]["Action"] == "s3:GetObject"
    assert by_sid["ReadReportsForMesh"]["Resource"] == {"Fn::Join": ["", [arn(bucket_ids(t)["Reports"]), "/reports/*"]]}
    assert by_sid["DecryptReports"]["Resource"] == arn(key_id(t, "KeysReports"))
    s3 = [s for s in by_sid.values() if any(a.startswith("s3:") for a in as_list(s["Action"]))]
    assert s3 == [by_sid["ReadReportsForMesh"]]


def test_mesh_runs_every_minute_and_a_failed_run_is_retried_by_the_next_not_by_lambda(dev):
    t = dev.template
    mesh_id, resource = one(t, "AWS::Lambda::Function", FunctionName="birthnotify-dev-mesh")
    props = resource["Properties"]
    _, rule = one(t, "AWS::Events::Rule", Name="birthnotify-dev-mesh")
    assert rule["Properties"]["ScheduleExpression"] == "rate(1 minute)"
    [target] = rule["Properties"]["Targets"]
    assert target["Arn"] == arn(mesh_id)
    assert target["RetryPolicy"] == {"MaximumRetryAttempts": 0, "MaximumEventAgeInSeconds": 60}
    _, invoke = one(t, "AWS::Lambda::EventInvokeConfig")
    assert invoke["Properties"]["FunctionName"] == ref(mesh_id)
    assert (invoke["Properties"]["MaximumRetryAttempts"], invoke["Properties"]["MaximumEventAgeInSeconds"]) == (0, 60)
    assert (props["MemorySize"], props["Timeout"]) == (512, 600)
    assert "DeadLetterConfig" not in props and "ReservedConcurrentExecutions" not in props  # a lease instead
    variables = props["Environment"]["Variables"]
    assert (
        variables["MESH_FILE_WORKFLOW_ID"],
        variables["MESH_NEMS_WORKFLOW_ID"],
        variables["MESH_REPORT_WORKFLOW_ID"],
    ) == ("BIRTHNOTIFY_FILES_1", "BIRTHNOTIFICATION_1", "BIRTHNOTIFY_REPORTS_1")
    secret_id, secret = one(t, "AWS::SecretsManager::Secret", Name="birthnotify-dev/mesh")
    assert variables["MESH_SECRET_ID"] == ref(secret_id)
    assert "SecretString" not in secret["Properties"]  # its value is DevOps' to put, never in the template
    assert secret["Properties"]["KmsKeyId"] == arn(key_id(t, "KeysOps"))


def test_mesh_may_write_only_mesh_objects_and_do_nothing_else(dev):
    t = dev.template
    role_id, _ = role_of(t, "birthnotify-dev-mesh-function")
    by_sid = {s["Sid"]: s for s in policy_of(t, role_id)}
    assert set(by_sid) == {
        "WriteOwnLogs",
        "DecryptOwnEnvironment",
        "XRayTracing",
        "StoreMessages",
        "SeeStoredMessages",
        "EncryptInbound",
        "TakeRunLease",
        "SendQuarantineNotices",
        "UsePipelineKey",
        "ReadMeshSecret",
        "DecryptMeshSecret",
    }
    inbound = arn(bucket_ids(t)["Inbound"])
    mesh_objects = [
        {"Fn::Join": ["", [inbound, "/inbound/*/mesh-*"]]},
        {"Fn::Join": ["", [inbound, "/quarantine/mesh-*"]]},
    ]
    assert sorted(as_list(by_sid["StoreMessages"]["Action"])) == ["s3:AbortMultipartUpload", "s3:PutObject"]
    assert by_sid["StoreMessages"]["Resource"] == mesh_objects == by_sid["SeeStoredMessages"]["Resource"]
    assert by_sid["SeeStoredMessages"]["Action"] == "s3:GetObject"
    assert sorted(as_list(by_sid["TakeRunLease"]["Action"])) == ["dynamodb:DeleteItem", "dynamodb:PutItem"]
    # The state table holds ingest's idempotency and progress records too: only the lease item may be written.
    state, _ = one(t, "AWS::DynamoDB::Table", TableName="birthnotify-dev-state")
    assert by_sid["TakeRunLease"]["Resource"] == arn(state)
    assert by_sid["TakeRunLease"]["Condition"] == {
        "ForAllValues:StringEquals": {"dynamodb:LeadingKeys": ["lock#mesh-run"]}
    }
    events, _ = queue(t, "birthnotify-dev-file-events")
    assert by_sid["SendQuarantineNotices"]["Resource"] == arn(events)
    assert by_sid["EncryptInbound"]["Resource"] == arn(key_id(t, "KeysInbound"))


# -- monitoring ------------------------------------------------------------------------------------------


def alarms(t: dict) -> dict[str, dict]:
    return {v["Properties"]["AlarmName"]: v["Properties"] for v in resources(t, "AWS::CloudWatch::Alarm").values()}


OPERATORS_TOPIC_ARN = {
    "Fn::Join": [
        "",
        [
            "arn:",
            ref("AWS::Partition"),
            ":sns:",
            ref("AWS::Region"),
            ":",
            ref("AWS::AccountId"),
            ":birthnotify-dev-alarms",
        ],
    ]
}


def dlqs_of(t: dict) -> set[str]:
    return {
        v["Properties"]["RedrivePolicy"]["deadLetterTargetArn"]["Fn::GetAtt"][0]
        for v in resources(t, "AWS::SQS::Queue").values()
        if "RedrivePolicy" in v["Properties"]
    }


def watched_queues(by_name: dict[str, dict]) -> set[str]:
    return {
        a["Dimensions"][0]["Value"]["Fn::GetAtt"][0]
        for a in by_name.values()
        if a["MetricName"] == "ApproximateNumberOfMessagesVisible"
    }


def test_every_dlq_and_every_function_alarm_to_the_encrypted_operators_topic(dev):
    t = dev.template
    topic_id, topic = one(t, "AWS::SNS::Topic")
    assert topic["Properties"]["TopicName"] == "birthnotify-dev-alarms"  # authority stacks name it
    assert topic["Properties"]["KmsMasterKeyId"] == arn(key_id(t, "KeysOps"))
    emails = sorted(
        s["Properties"]["Endpoint"]
        for s in resources(t, "AWS::SNS::Subscription").values()
        if s["Properties"]["Protocol"] == "email"
    )
    assert emails == sorted(REGISTRY.operator_emails)
    by_name = alarms(t)
    for alarm in by_name.values():
        assert alarm["AlarmActions"] == [ref(topic_id)] and alarm["OKActions"] == [ref(topic_id)]
    dlqs = dlqs_of(t) | {queue(t, "birthnotify-dev-dlq-notify-async")[0]}
    assert watched_queues(by_name) == dlqs
    for alarm in by_name.values():
        if alarm["MetricName"] == "ApproximateNumberOfMessagesVisible":
            assert (alarm["Threshold"], alarm["ComparisonOperator"]) == (0, "GreaterThanThreshold")
    errors = {a["Dimensions"][0]["Value"]["Ref"] for a in by_name.values() if a["MetricName"] == "Errors"}
    assert errors == {
        one(t, "AWS::Lambda::Function", FunctionName=f"birthnotify-dev-{n}")[0] for n in ("ingest", "notify", "mesh")
    }
    quarantined = by_name["birthnotify-dev-mesh-quarantined"]
    assert (quarantined["MetricName"], quarantined["Threshold"], quarantined["Namespace"]) == (
        "MeshMessagesQuarantined",
        0,
        "BirthNotifications",
    )
    assert quarantined["Dimensions"] == [{"Name": "service", "Value": "birthnotify-dev-mesh"}]


def test_each_authority_stack_alarms_on_its_dlqs_to_the_core_stacks_topic_by_name(dev):
    for stack in dev.authority_stacks:
        t = dev.template_of(stack)
        by_name = alarms(t)
        assert watched_queues(by_name) == dlqs_of(t) and dlqs_of(t)
        for alarm in by_name.values():
            assert alarm["AlarmActions"] == [OPERATORS_TOPIC_ARN] and alarm["OKActions"] == [OPERATORS_TOPIC_ARN]


def test_an_authority_that_stops_consuming_raises_an_alarm(dev):
    for authority in REGISTRY.authorities:
        by_name = alarms(dev.authority_template(authority.gss_code))
        alarm = by_name[f"birthnotify-dev-age-authority-{authority.gss_code}"]
        assert alarm["MetricName"] == "ApproximateAgeOfOldestMessage"
        assert alarm["Threshold"] == 72 * 3600
        assert authority.contact_emails[0] in alarm["AlarmDescription"]


def test_dev_synthesis_leaves_no_unacknowledged_finding(dev):
    # Synthesis itself fails on any finding (see infra.nag); the report agrees.
    assert dev.findings() == []
    assert len(dev.acknowledgements()) >= 30


def test_the_dev_templates_pass_cfn_lint_without_warnings(dev):
    for path in dev.template_paths:
        assert cfn_lint(path) == [], path.name


# -- the split -------------------------------------------------------------------------------------------


def test_each_registry_authority_is_in_the_stack_of_its_code_block_and_nowhere_else(dev):
    assert [s.stack_name for s in dev.authority_stacks] == [
        "BirthNotifications-dev-Authorities-E06-0",  # York, E06000014
        "BirthNotifications-dev-Authorities-E08-1",  # Leeds, E08000035
        "BirthNotifications-dev-Authorities-E09-0",  # Camden, E09000007
        "BirthNotifications-dev-Authorities-E10-0",  # Kent, E10000016
        "BirthNotifications-dev-Authorities-W06-0",  # Cardiff, W06000015
    ]
    for authority in REGISTRY.authorities:
        name = authority_queue_name("birthnotify-dev-authority", authority.gss_code)
        holders = [
            n
            for n, t in dev.templates.items()
            if any(v["Properties"].get("QueueName") == name for v in resources(t, "AWS::SQS::Queue").values())
        ]
        assert holders == [dev.authority_stack_of(authority.gss_code).stack_name]


def test_stacks_share_nothing_by_export_and_authority_stacks_deploy_after_the_core(dev):
    for name, t in dev.templates.items():
        text = json.dumps(t)
        assert "Fn::ImportValue" not in text and not [o for o in t.get("Outputs", {}).values() if "Export" in o], name
    manifest = json.loads((dev.outdir / "manifest.json").read_text())["artifacts"]
    for stack in dev.authority_stacks:
        assert dev.stack.artifact_id in manifest[stack.artifact_id]["dependencies"]
    assert not [d for d in manifest[dev.stack.artifact_id].get("dependencies", []) if "Authorities" in d]


def test_function_environments_are_encrypted_with_the_ops_key_only_their_own_role_decrypts(dev):
    t = dev.template
    for name in ("ingest", "notify", "mesh"):
        assert function(t, f"birthnotify-dev-{name}")["KmsKeyArn"] == arn(key_id(t, "KeysOps"))
        role_id, _ = role_of(t, f"birthnotify-dev-{name}-function")
        [statement] = [s for s in policy_of(t, role_id) if s["Sid"] == "DecryptOwnEnvironment"]
        assert statement["Action"] == "kms:Decrypt" and statement["Resource"] == arn(key_id(t, "KeysOps"))
        context = statement["Condition"]["StringEquals"]["kms:EncryptionContext:aws:lambda:FunctionArn"]
        assert json.dumps(context).endswith(f':function:birthnotify-dev-{name}"]]}}')


def test_the_assets_manifest_names_every_asset_directory(dev):
    manifest = json.loads(dev.assets_manifest.read_text())
    directories = [f["source"]["path"] for f in manifest["files"].values() if f["source"].get("packaging") == "zip"]
    assert len(directories) == 6  # three layers, three functions (the S3 notifications handler is inline)
    for directory in directories:
        assert (dev.outdir / directory).is_dir()


def test_tags_are_stack_tags_applied_at_deployment_not_written_on_each_resource(dev):
    # CloudFormation propagates stack tags to the resources; keeping them out of the template also keeps it
    # deployable into moto (which misreads a KMS key's Tags property).
    for stack in dev.stacks:
        assert stack.tags.tag_values() == {"Project": "birth-notifications", "Stage": "dev"}
        t = dev.template_of(stack)
        assert not [k for k, v in t["Resources"].items() if "Tags" in v.get("Properties", {})]


# -- the sharing ledger ------------------------------------------------------------------------------------


def test_the_ledger_is_kept_eight_years_encrypted_with_its_own_key_and_its_hmac_key_is_generated(dev):
    t = dev.template
    ledger = t["Resources"][bucket_ids(t)["Ledger"]]["Properties"]
    rule = ledger["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]
    assert rule["ServerSideEncryptionByDefault"] == {
        "SSEAlgorithm": "aws:kms",
        "KMSMasterKeyID": arn(key_id(t, "KeysLedger")),
    }
    [expiry] = [rule for rule in ledger["LifecycleConfiguration"]["Rules"] if "Prefix" not in rule]
    assert expiry["ExpirationInDays"] == 2922
    # A stopped file's resume snapshot (counts, row errors, notification ids) lives as long as its checkpoint.
    [snapshots] = [rule for rule in ledger["LifecycleConfiguration"]["Rules"] if rule.get("Prefix") == "resume/"]
    assert snapshots["ExpirationInDays"] == 35
    assert ledger["LoggingConfiguration"]["DestinationBucketName"] == ref(bucket_ids(t)["AccessLogs"])
    _, secret = one(t, "AWS::SecretsManager::Secret", Name="birthnotify-dev/ledger-hmac-key")
    assert secret["Properties"]["KmsKeyId"] == arn(key_id(t, "KeysLedger"))
    generated = secret["Properties"]["GenerateSecretString"]
    assert generated["PasswordLength"] >= 32 and generated["ExcludePunctuation"] is True


def test_the_glue_table_reads_the_ledger_entries_by_day_with_the_models_columns(dev):
    from birthnotify.domain.ledger import LedgerEntry

    t = dev.template
    _, table = one(t, "AWS::Glue::Table")
    table_input = table["Properties"]["TableInput"]
    columns = {c["Name"]: c["Type"] for c in table_input["StorageDescriptor"]["Columns"]}
    assert list(columns) == list(LedgerEntry.model_fields)
    assert (columns["row"], columns["fields_shared"], columns["baby_nhs_hash"]) == ("int", "array<string>", "string")
    assert table_input["PartitionKeys"] == [{"Name": "day", "Type": "date"}]
    assert table_input["Parameters"]["projection.enabled"] == "true"
    location = json.dumps(table_input["StorageDescriptor"]["Location"])
    assert bucket_ids(t)["Ledger"] in location and "/ledger/" in location
    assert table_input["StorageDescriptor"]["SerdeInfo"]["SerializationLibrary"] == "org.openx.data.jsonserde.JsonSerDe"
