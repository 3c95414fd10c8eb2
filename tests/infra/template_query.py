"""Small queries over a synthesized CloudFormation template (a dict), shared by the infrastructure tests."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

from cfnlint.api import ManualArgs, lint_file

REGION = "eu-west-2"
ROOT = Path(__file__).resolve().parents[2]
CHECKOV = ROOT / ".venv-checkov" / "bin" / "checkov"
"""checkov lives in its own venv (make install): it pins boto3 and packaging to versions the project's venv
must not be held to."""


def cfn_lint(template: Path) -> list[str]:
    """cfn-lint's errors and warnings (as `make synth` runs it, for the deployment region)."""
    return [str(match) for match in lint_file(template, ManualArgs(regions=[REGION]))]


def checkov(templates: list[Path]) -> dict:
    """One checkov run (as ``make synth`` runs it) over ``templates``: its JSON report (``results`` with passed,
    failed and skipped checks, ``summary``). Offline: no download, no update check."""
    assert CHECKOV.exists(), f"{CHECKOV} is missing: run make install"
    command = [str(CHECKOV), "--framework", "cloudformation", "--skip-download", "--output", "json", "--compact"]
    for template in templates:
        command += ["--file", str(template)]
    environment = {**os.environ, "CKV_SKIP_PACKAGE_UPDATE_CHECK": "true"}
    result = subprocess.run(  # noqa: S603 (our own tool, our own files)
        command, capture_output=True, text=True, check=False, env=environment
    )
    assert result.returncode in (0, 1), result.stderr  # 1: failed checks, reported below
    return json.loads(result.stdout)


def resources(template: dict, kind: str) -> dict[str, dict]:
    return {key: value for key, value in template["Resources"].items() if value["Type"] == kind}


def one(template: dict, kind: str, **properties: Any) -> tuple[str, dict]:
    found = [
        (key, value)
        for key, value in resources(template, kind).items()
        if all(value["Properties"].get(name) == wanted for name, wanted in properties.items())
    ]
    assert len(found) == 1, f"{len(found)} {kind} with {properties}"
    return found[0]


def ref(logical_id: str) -> dict:
    return {"Ref": logical_id}


def arn(logical_id: str) -> dict:
    return {"Fn::GetAtt": [logical_id, "Arn"]}


def queue(template: dict, name: str) -> tuple[str, dict]:
    return one(template, "AWS::SQS::Queue", QueueName=name)


def policy_of(template: dict, role_id: str) -> list[dict]:
    """Statements of every managed policy attached to a role (roles have no other policies here)."""
    statements = []
    for value in resources(template, "AWS::IAM::ManagedPolicy").values():
        if ref(role_id) in value["Properties"].get("Roles", []):
            statements += value["Properties"]["PolicyDocument"]["Statement"]
    return statements


def as_list(value: Any) -> list:
    return value if isinstance(value, list) else [value]


def role_of(template: dict, role_name: str) -> tuple[str, dict]:
    return one(template, "AWS::IAM::Role", RoleName=role_name)


def trusted_principals(role: dict) -> list:
    return [
        p for s in role["Properties"]["AssumeRolePolicyDocument"]["Statement"] for p in as_list(s["Principal"]["AWS"])
    ]


def key_id(template: dict, prefix: str) -> str:
    """Logical id of the KMS key whose construct path starts with ``prefix`` (e.g. ``KeysInbound``)."""
    return next(k for k in resources(template, "AWS::KMS::Key") if k.startswith(prefix))
