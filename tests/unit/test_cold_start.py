"""What a cold start imports: no X-Ray SDK while tracing is off, no XML parser before a bundle arrives; and
the rule for "tracing is off" is Powertools' own, held to the pinned version."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from aws_lambda_powertools import Tracer
from birthnotify.adapters.tracing import tracing_enabled
from ingest_support import REGISTRY_PATH, ROOT

ENVIRONMENTS = [
    {},
    {"LAMBDA_TASK_ROOT": "/var/task"},
    {"LAMBDA_TASK_ROOT": "/var/task", "POWERTOOLS_TRACE_DISABLED": "true"},
    {"LAMBDA_TASK_ROOT": "/var/task", "POWERTOOLS_TRACE_DISABLED": "1"},
    {"LAMBDA_TASK_ROOT": "/var/task", "POWERTOOLS_TRACE_DISABLED": "false"},
    {"LAMBDA_TASK_ROOT": "/var/task", "POWERTOOLS_TRACE_DISABLED": "OFF"},
    {"LAMBDA_TASK_ROOT": "/var/task", "AWS_SAM_LOCAL": "true"},
    {"LAMBDA_TASK_ROOT": "/var/task", "AWS_CHALICE_CLI_MODE": "true"},
    {"POWERTOOLS_TRACE_DISABLED": "false"},
]


@pytest.mark.parametrize("environ", ENVIRONMENTS, ids=lambda environ: ",".join(f"{k}={v}" for k, v in environ.items()))
def test_tracing_is_on_exactly_when_powertools_would_trace(
    environ: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("LAMBDA_TASK_ROOT", "POWERTOOLS_TRACE_DISABLED", "AWS_SAM_LOCAL", "AWS_CHALICE_CLI_MODE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    assert tracing_enabled(dict(os.environ)) is not bool(Tracer._is_tracer_disabled())


IMPORTS = """
import importlib.util, json, sys
spec = importlib.util.spec_from_file_location("handler", sys.argv[1])
handler = importlib.util.module_from_spec(spec)
spec.loader.exec_module(handler)
print(json.dumps({"xray": "aws_xray_sdk" in sys.modules, "xml": "defusedxml" in sys.modules}))
"""


def _imports(function: str, **environ: str) -> dict[str, bool]:
    env = {key: value for key, value in os.environ.items() if key != "POWERTOOLS_TRACE_DISABLED"}
    env |= {"REGISTRY_PATH": str(REGISTRY_PATH)} | environ
    result = subprocess.run(  # noqa: S603
        [sys.executable, "-c", IMPORTS, str(ROOT / "functions" / function / "handler.py")],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(result.stdout.splitlines()[-1])


@pytest.mark.parametrize("function", ["ingest", "notify", "mesh"])
def test_a_cold_start_without_tracing_imports_neither_xray_nor_the_xml_parser(function: str) -> None:
    found = _imports(function, POWERTOOLS_TRACE_DISABLED="true", LAMBDA_TASK_ROOT="/var/task")
    assert not found["xray"] and not found["xml"]


def test_with_tracing_on_the_tracer_is_built() -> None:
    assert _imports("ingest", LAMBDA_TASK_ROOT="/var/task")["xray"]
