"""Adding authorities to the registry changes only the stacks that hold them: the shipped registry, and the
same with two more authorities (one whose code falls inside an existing shard, before the authority already
there; one in a shard of its own), synthesized and compared template by template."""

from __future__ import annotations

import pytest
from birthnotify.domain.registry import load_registry

from infra.app import Synthesis, synth_app
from infra.config import DEFAULT_REGISTRY
from infra.national import ChildrensServicesAuthority, authority_toml, write_registry

pytestmark = pytest.mark.infra

HULL = ChildrensServicesAuthority("E06000010", "Kingston upon Hull City Council", "England")
"""Shard E06-0, where York (E06000014) already is: it comes before York in code order."""
BOLTON = ChildrensServicesAuthority("E08000001", "Bolton Metropolitan Borough Council", "England")
"""Shard E08-0, which the shipped registry does not use (Leeds, E08000035, is in E08-1): a new stack."""


@pytest.fixture(scope="module")
def grown(tmp_path_factory: pytest.TempPathFactory) -> Synthesis:
    text = DEFAULT_REGISTRY.read_text(encoding="utf-8")
    text += "\n" + authority_toml(HULL, 1) + "\n" + authority_toml(BOLTON, 2)
    registry = write_registry(tmp_path_factory.mktemp("grown-registry"), text)
    assert {a.gss_code for a in load_registry(registry).authorities} >= {HULL.gss_code, BOLTON.gss_code}
    return synth_app("dev", tmp_path_factory.mktemp("cdk-grown"), {"registry_path": str(registry)})


def differing(before: dict, after: dict) -> set[str]:
    """Logical ids of resources added, removed or changed between two templates."""
    ids = set(before["Resources"]) | set(after["Resources"])
    return {i for i in ids if before["Resources"].get(i) != after["Resources"].get(i)}


def test_only_the_new_authorities_stacks_differ(dev, grown):
    before, after = dev.templates, grown.templates
    assert set(after) - set(before) == {"BirthNotifications-dev-Authorities-E08-0"}  # Bolton's, new
    assert set(before) - set(after) == set()
    changed = {name for name in before if name != dev.stack.stack_name and before[name] != after[name]}
    assert changed == {"BirthNotifications-dev-Authorities-E06-0"}  # Hull's, beside York
    york_and_hull = differing(
        before["BirthNotifications-dev-Authorities-E06-0"], after["BirthNotifications-dev-Authorities-E06-0"]
    )
    assert york_and_hull and all(HULL.gss_code in logical_id for logical_id in york_and_hull)  # York untouched
    assert all(
        BOLTON.gss_code in logical_id
        for logical_id in after["BirthNotifications-dev-Authorities-E08-0"]["Resources"]
        if logical_id.startswith("Authorities")
    )


def test_the_core_stack_changes_only_the_registry_its_config_layer_carries(dev, grown):
    before, after = dev.template, grown.template
    [layer] = differing(before, after)
    assert layer.startswith("LayersConfig") and after["Resources"][layer]["Type"] == "AWS::Lambda::LayerVersion"
    old, new = before["Resources"][layer], after["Resources"][layer]
    assert old["Properties"]["Content"]["S3Key"] != new["Properties"]["Content"]["S3Key"]
    assert {**old["Properties"], "Content": None} == {**new["Properties"], "Content": None}
    assert before.get("Outputs") == after.get("Outputs")
