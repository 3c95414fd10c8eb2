"""The local cloud's synthesis cache, asset zips and moto SQS speed-ups (no CDK synthesis here)."""

from __future__ import annotations

import json
import zipfile

import boto3
from birthnotify_cli.localcloud import speedups
from birthnotify_cli.localcloud import synth as synth_module
from birthnotify_cli.localcloud.synth import deployment_order, sources_key, synthesize_cached, zipped
from moto import mock_aws


def test_the_cache_key_follows_content_not_caches(tmp_path):
    (tmp_path / "infra").mkdir()
    (tmp_path / "infra" / "app.py").write_text("v1")
    (tmp_path / "cdk.json").write_text("{}")
    key = sources_key(tmp_path, ("infra", "cdk.json", "missing"))
    (tmp_path / "infra" / "__pycache__").mkdir()
    (tmp_path / "infra" / "__pycache__" / "app.cpython-311.pyc").write_bytes(b"\0")
    assert sources_key(tmp_path, ("infra", "cdk.json", "missing")) == key
    (tmp_path / "infra" / "app.py").write_text("v2")
    assert sources_key(tmp_path, ("infra", "cdk.json", "missing")) != key


def test_a_synthesis_is_reused_until_the_sources_change(tmp_path, monkeypatch):
    runs = []

    def fake_synthesize(outdir):
        runs.append(outdir)
        outdir.mkdir(parents=True)
        (outdir / "Stack-local.template.json").write_text(json.dumps({"Resources": {}}))
        return outdir / "Stack-local.template.json"

    key = ["a" * 64]
    monkeypatch.setattr(synth_module, "sources_key", lambda: key[0])
    first = synthesize_cached(tmp_path, synthesize=fake_synthesize)
    second = synthesize_cached(tmp_path, synthesize=fake_synthesize)
    assert (first.cached, second.cached, len(runs)) == (False, True, 1)
    assert second.template_path == first.template_path and second.template == {"Resources": {}}
    for n in range(synth_module.KEEP + 1):
        key[0] = f"{n}" * 64
        synthesize_cached(tmp_path, synthesize=fake_synthesize)
    kept = [d for d in tmp_path.iterdir() if d.is_dir()]
    assert len(kept) == synth_module.KEEP and not list(tmp_path.glob(".partial-*"))


def test_stacks_deploy_after_the_stacks_they_depend_on(tmp_path):
    stacks = {"Core": [], "Shard-B": ["Core"], "Shard-A": ["Core", "Shard-B"]}
    artifacts = {
        name: {
            "type": "aws:cloudformation:stack",
            "properties": {"templateFile": f"{name}.template.json"},
            "dependencies": [*dependencies, f"{name}.assets"],
        }
        for name, dependencies in stacks.items()
    }
    artifacts |= {f"{name}.assets": {"type": "cdk:asset-manifest"} for name in stacks}
    (tmp_path / "manifest.json").write_text(json.dumps({"artifacts": artifacts}))
    for name in stacks:
        (tmp_path / f"{name}.template.json").write_text("{}")
    assert [p.name for p in deployment_order(tmp_path)] == [
        "Core.template.json",
        "Shard-B.template.json",
        "Shard-A.template.json",
    ]


def test_asset_directories_are_zipped_once_with_relative_paths(tmp_path):
    asset = tmp_path / "asset.abc"
    (asset / "python" / "pkg").mkdir(parents=True)
    (asset / "python" / "pkg" / "__init__.py").write_text("x = 1")
    archive = zipped(asset, tmp_path / "zips")
    with zipfile.ZipFile(archive) as opened:
        assert opened.namelist() == ["python/pkg/__init__.py"]
    mtime = archive.stat().st_mtime_ns
    assert zipped(asset, tmp_path / "zips").stat().st_mtime_ns == mtime


@mock_aws
def test_sped_up_sqs_counts_are_the_counts_moto_would_give():
    assert speedups.install() is None
    from moto.sqs.models import sqs_backends

    sqs = boto3.client("sqs", region_name="eu-west-2")
    url = sqs.create_queue(QueueName="counts")["QueueUrl"]
    for n in range(6):
        sqs.send_message(QueueUrl=url, MessageBody=str(n), DelaySeconds=300 if n < 2 else 0)
    sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=1, VisibilityTimeout=300)
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert (
        attributes["ApproximateNumberOfMessages"],
        attributes["ApproximateNumberOfMessagesNotVisible"],
        attributes["ApproximateNumberOfMessagesDelayed"],
    ) == ("3", "1", "2")
    queue = sqs_backends["123456789012"]["eu-west-2"].queues["counts"]
    # moto's own per-message properties, which the speed-ups do not replace, agree.
    assert queue.approximate_number_of_messages == sum(1 for m in queue._messages if m.visible and not m.delayed)
    assert queue.approximate_number_of_messages_not_visible == sum(1 for m in queue._messages if not m.visible)
    assert queue.approximate_number_of_messages_delayed == sum(1 for m in queue._messages if m.delayed)
    assert speedups.install() is None  # once per process
