"""The pieces the app is built from, without synthesizing it: context, environment mapping, the
dependency layer, the rules that keep every wildcard, acknowledgement and checkov suppression reasoned, the
generated national registry and the rule that assigns authorities to stacks."""

from __future__ import annotations

import csv
import dataclasses
import re
import shutil
from pathlib import Path

import pytest
from aws_cdk import App, Stack, Validations
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from aws_cdk.assertions import Template
from birthnotify.domain.postcodes import MAGIC, PostcodeDirectory
from birthnotify.domain.registry import load_registry
from birthnotify.shared.settings import INGEST_ENV, Env

from infra.config import CONTEXT_KEYS, DEFAULT_REGISTRY, ROOT, ConfigError, StageConfig, placeholder_reason
from infra.constructs.function import MissingEnvironment, environment_for
from infra.constructs.layers import (
    BYTECODE_PYTHON_ENV,
    DOMAIN_LAYER,
    LAYER_PYTHON_PATH,
    PROVIDED_BY_RUNTIME,
    REQUIREMENTS,
    BytecodeCompiler,
    LayerBuildError,
    config_layer_dir,
    dependencies_layer_dir,
    domain_layer_dir,
    find_bytecode_compiler,
)
from infra.constructs.policy import LeastPrivilegePolicy
from infra.docs import documented_context
from infra.nag import acknowledge, collect, skip_checkov, wildcard_findings
from infra.national import COUNCILS, childrens_services_authorities, write_national_registry
from infra.shards import SHARD_SPAN, by_shard, shard_of, shard_range

pytestmark = pytest.mark.infra


def config(**context) -> StageConfig:
    return StageConfig.from_context(context.get)


def test_context_defaults_to_a_disposable_dev_stage_and_prod_retains(tmp_path):
    dev, prod = config(), config(stage="prod", **documented_context(tmp_path))
    assert (dev.stage, dev.retain_data, dev.prefix) == ("dev", False, "birthnotify-dev")
    assert (prod.retain_data, prod.authority_queue_prefix) == (True, "birthnotify-prod-authority")
    assert config(stage="staging").retain_data  # only dev may lose data


def test_context_values_from_the_cli_are_converted():
    cfg = config(
        raw_upload_retention_days="14",
        held_reviewer_principals="arn:a, arn:b",
        email_transport="notify",
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
        ({"authority_max_message_age_days": "14"}, "authority_max_message_age_days must be 1..10"),
        ({"ingest_memory_mb": "lots"}, "ingest_memory_mb='lots': expected int"),
    ],
)
def test_bad_context_is_refused_with_the_key_named(context, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        config(**context)


def test_prod_refuses_placeholders_naming_every_one_and_dev_keeps_them(tmp_path):
    with pytest.raises(ConfigError) as refused:
        config(stage="prod")
    message = str(refused.value)
    assert message.startswith("stage prod refuses placeholder values")
    for setting in (
        "context email_sender=",
        "context consumer_guide_url=",
        "operator_emails=",
        "trust RX1 contact_emails=",
        "trust RX1 uploader_principals=",
        "trust RX2 uploader_principals=",
        "authority E08000035 consumer_principals=",
        "authority E10000016 consumer_principals=",
        "authority E09000007 contact_emails=",
        "authority E06000014 contact_emails=",
        "authority W06000015 contact_emails=",
        "authority W06000015 consumer_principals=",
        "trust RX2 mesh_mailbox=",
    ):
        assert f"\n  {setting}" in message or f"config/registry.toml {setting}" in message, setting
    assert message.count("\n  ") == 17  # one line per offending value, nothing else
    assert config().email_sender.endswith("@example.nhs.uk")  # dev and the local cloud: placeholders are fine
    real = documented_context(tmp_path)
    assert config(stage="prod", **real).stage == "prod"
    with pytest.raises(ConfigError, match=r"held_reviewer_principals='arn:aws:iam::123456789012:role/r': account"):
        config(stage="prod", **{**real, "held_reviewer_principals": "arn:aws:iam::123456789012:role/r"})


@pytest.mark.parametrize(
    ("value", "placeholder"),
    [
        ("birth-notifications@example.nhs.uk", True),
        ("childrens-centres@leeds.example.gov.uk", True),
        ("someone@example.com", True),
        ("https://birth-notifications.example.nhs.uk/guide", True),
        ("ops@trust.test", True),
        ("arn:aws:iam::111111111111:role/upload", True),
        ("arn:aws:iam::123456789012:role/upload", True),
        ("birth-notifications@nhs.net", False),
        ("https://www.leeds.gov.uk/birth-notifications", False),
        ("arn:aws:iam::210987654321:role/upload", False),
        ("examples@leeds.gov.uk", False),  # a word, not an example domain
        ("X26ABC2", True),  # a mesh-sandbox mailbox
        ("RX2OT001", False),
    ],
)
def test_placeholders_are_example_domains_and_invented_accounts(value, placeholder):
    assert (placeholder_reason(value) is not None) == placeholder


def test_make_synth_for_prod_refuses_placeholders_with_one_clear_message(tmp_path):
    """What `make synth STAGE=prod` runs: the CDK CLI, which runs infra/app.py."""
    import os
    import subprocess

    done = subprocess.run(  # noqa: S603
        [
            str(ROOT / "node_modules" / ".bin" / "cdk"),
            "synth",
            "--context",
            "stage=prod",
            "--quiet",
            "--output",
            str(tmp_path / "cdk.out"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**os.environ, "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "18,20,22"},
    )
    assert done.returncode != 0
    assert "birthnotify: stage prod refuses placeholder values" in done.stderr
    assert "Traceback" not in done.stderr
    assert "trust RX1 uploader_principals='arn:aws:iam::111111111111:role/northgate-maternity-upload'" in done.stderr


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
    compiler = find_bytecode_compiler()  # as the Layers construct finds it: bytecode iff a CPython 3.13 is here
    directory, key = dependencies_layer_dir(compiler=compiler)
    again, same_key = dependencies_layer_dir(compiler=compiler)
    assert (again, same_key) == (directory, key)  # cached: the second call builds nothing
    site = directory / "python"
    assert (site / "aws_lambda_powertools").is_dir() and (site / "pydantic").is_dir() and (site / "tzdata").is_dir()
    cores = list((site / "pydantic_core").glob("_pydantic_core.cpython-313-aarch64-linux-gnu.so"))
    assert cores, "pydantic_core must be the Lambda platform's wheel"
    names = {p.name.split("-")[0].lower() for p in site.iterdir()}
    assert not names & set(PROVIDED_BY_RUNTIME)
    compiled = list(site.rglob("*.pyc"))
    if compiler is None:
        assert not compiled
    else:
        assert compiler.tag == "cpython-313"
        assert compiled and {path.name.rsplit(".", 2)[1] for path in compiled} == {"cpython-313"}
        assert (site / "pydantic" / "__pycache__" / "main.cpython-313.pyc").is_file()
    pins = dict(line.split("==") for line in REQUIREMENTS.read_text().splitlines() if "==" in line)
    assert (site / f"pydantic-{pins['pydantic']}.dist-info").is_dir()


def test_only_an_interpreter_of_the_runtimes_version_compiles_the_layers(monkeypatch, tmp_path):
    import sys

    monkeypatch.setenv(BYTECODE_PYTHON_ENV, sys.executable)
    here = sys.version_info[:2]
    found = find_bytecode_compiler(version=(here[0], here[1]))
    assert found is not None and found.tag == sys.implementation.cache_tag
    assert find_bytecode_compiler(version=(here[0], here[1] + 1)) is None  # another version's bytecode is useless
    monkeypatch.setenv(BYTECODE_PYTHON_ENV, str(tmp_path / "no-such-python"))
    assert find_bytecode_compiler(version=(here[0], here[1])) is None


def test_domain_layer_ships_unchecked_bytecode_of_every_module_naming_its_lambda_path(tmp_path):
    import importlib.util
    import marshal
    import sys

    compiler = BytecodeCompiler(Path(sys.executable), sys.implementation.cache_tag)  # the mechanism, any version
    directory, key = domain_layer_dir(cache=tmp_path, compiler=compiler)
    assert domain_layer_dir(cache=tmp_path, compiler=compiler) == (directory, key)
    source_only, other_key = domain_layer_dir(cache=tmp_path)
    assert other_key != key and not list(source_only.rglob("*.pyc"))  # the key names the bytecode's interpreter
    modules = sorted(p.relative_to(directory) for p in directory.rglob("*.py"))
    assert modules == sorted(
        p.relative_to(DOMAIN_LAYER) for p in DOMAIN_LAYER.rglob("*.py") if "__pycache__" not in p.parts
    )
    for module in modules:
        cached = Path(importlib.util.cache_from_source(str(directory / module)))
        data = cached.read_bytes()
        assert data[:4] == importlib.util.MAGIC_NUMBER
        assert int.from_bytes(data[4:8], "little") == 0b01  # hash-based, source never checked: layers are read-only
        code = marshal.loads(data[16:])  # noqa: S302 (bytecode this test just compiled)
        assert code.co_filename == f"{LAYER_PYTHON_PATH}/{module.relative_to('python').as_posix()}"


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


def test_a_checkov_suppression_needs_a_specific_reason_and_lands_in_the_resources_metadata():
    stack = Stack(App(), "S")
    bucket = s3.Bucket(stack, "B")
    with pytest.raises(ValueError, match="specific reason"):
        skip_checkov(bucket, "CKV_AWS_18", "not needed")
    skip_checkov(bucket, "CKV_AWS_18", "A reason long enough to say why this finding is acceptable here.")
    skip_checkov(bucket, "CKV_AWS_21", "Another reason long enough to say why this one is acceptable here.")
    with pytest.raises(ValueError, match="already skipped"):
        skip_checkov(bucket, "CKV_AWS_18", "A reason long enough to say why this finding is acceptable here.")
    [resource] = Template.from_stack(stack).to_json()["Resources"].values()
    assert resource["Metadata"]["checkov"] == {
        "skip": [
            {"id": "CKV_AWS_18", "comment": "A reason long enough to say why this finding is acceptable here."},
            {"id": "CKV_AWS_21", "comment": "Another reason long enough to say why this one is acceptable here."},
        ]
    }


def test_the_generated_national_registry_is_every_childrens_services_authority_and_validates(tmp_path):
    rows = list(csv.DictReader(COUNCILS.open(newline="", encoding="utf-8")))
    current = [r for r in rows if r["current"] == "True"]
    registry = load_registry(write_national_registry(tmp_path, trusts=3))  # validated as any registry is
    assert {a.gss_code for a in registry.authorities} == {
        r["gss_code"] for r in current if r["childrens_services_gss"] == r["gss_code"]
    }
    assert len(registry.authorities) == 175 and len(registry.trusts) == 3
    assert all(a.agreements and a.consumer_principals for a in registry.authorities)
    # A two-tier county serves its current districts: a district's births route to its county.
    for row in current:
        assert registry.authority(row["gss_code"]).gss_code == row["childrens_services_gss"]


def test_an_authority_belongs_to_the_block_of_25_codes_it_falls_in():
    assert [shard_of(code) for code in ("E06000001", "E06000024", "E06000025", "E08000035", "W06000024")] == [
        "E06-0",
        "E06-0",
        "E06-1",
        "E08-1",
        "W06-0",
    ]
    assert shard_range("E08-1") == ("E08000025", "E08000049")
    with pytest.raises(ValueError, match="not a GSS code"):
        shard_of("E0600001")


def test_shards_are_bounded_and_an_authority_never_moves_when_others_come_or_go():
    national = childrens_services_authorities()
    shards = by_shard(national)
    assert max(len(members) for members in shards.values()) <= SHARD_SPAN
    where = {a.gss_code: shard for shard, members in shards.items() for a in members}
    for removed in national[::7]:  # any authority leaving: every other one stays in its shard
        rest = by_shard(a for a in national if a is not removed)
        assert all(where[a.gss_code] == shard for shard, members in rest.items() for a in members)
        assert {s for s in shards if shards[s] != rest.get(s)} == {where[removed.gss_code]}


def test_the_config_layer_ships_the_postcode_index_built_from_the_registrys_csv_and_a_registry_naming_it(tmp_path):
    registry = load_registry(DEFAULT_REGISTRY)
    staged = config_layer_dir(config(), registry, cache=tmp_path)
    assert config_layer_dir(config(), registry, cache=tmp_path) == staged  # built once, then reused
    files = staged / "config"
    assert sorted(p.name for p in files.iterdir()) == [
        "authorities-england-wales.csv",
        "postcodes.idx",
        "registry.toml",
    ]
    shipped = load_registry(files / "registry.toml")
    assert shipped.postcode_directory.file == "postcodes.idx"
    assert shipped.model_dump() == {
        **registry.model_dump(),
        "postcode_directory": {**registry.postcode_directory.model_dump(), "file": "postcodes.idx"},
    }
    assert (files / "postcodes.idx").read_bytes()[: len(MAGIC)] == MAGIC
    index = PostcodeDirectory.load(files / "postcodes.idx", shipped.postcode_directory)
    extract = DEFAULT_REGISTRY.parent / "postcodes.csv"
    from_csv = PostcodeDirectory.load(extract, registry.postcode_directory)
    postcodes = [row["pcds"] for row in csv.DictReader(extract.open(newline=""))]
    assert len(index) == len(postcodes) and all(index.lookup(p) == from_csv.lookup(p) for p in postcodes)


@pytest.mark.parametrize(
    ("old", "new", "refused"),
    [
        ('file = "postcodes.csv"\n', "", False),  # relying on the default: the shipped copy gains the line
        ("[postcode_directory]\n", "", False),  # no table at all: the shipped copy gains one
        ('file = "postcodes.csv"\n', 'file = """\npostcodes.csv"""\n', True),  # over two lines: not rewritten
    ],
)
def test_the_shipped_registry_names_the_index_however_the_registry_names_its_directory(tmp_path, old, new, refused):
    folder = tmp_path / "config"
    shutil.copytree(DEFAULT_REGISTRY.parent, folder)
    text = (folder / "registry.toml").read_text()
    assert old in text
    if old.startswith("[postcode_directory]"):  # drop the whole table
        start = text.index(old)
        text = text[:start] + text[text.index("\n\n", start) :]
    else:
        text = text.replace(old, new, 1)
    (folder / "registry.toml").write_text(text)
    registry = load_registry(folder / "registry.toml")
    stage = config(registry_path=str(folder / "registry.toml"))
    if refused:
        with pytest.raises(LayerBuildError, match=r'give \[postcode_directory\] a line file = "..."'):
            config_layer_dir(stage, registry, cache=tmp_path / "cache")
        return
    shipped = load_registry(config_layer_dir(stage, registry, cache=tmp_path / "cache") / "config" / "registry.toml")
    assert shipped.postcode_directory.file == "postcodes.idx"
    assert shipped.model_dump(exclude={"postcode_directory"}) == registry.model_dump(exclude={"postcode_directory"})
