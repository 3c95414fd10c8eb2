"""What a cold start imports: no X-Ray SDK while tracing is off, no XML parser before a bundle arrives, no
other function's modules; and the rule for "tracing is off" is Powertools' own, held to the pinned version."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

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
from pydantic import BaseModel
models, unbuilt = [BaseModel], []
while models:
    model = models.pop()
    models += model.__subclasses__()
    if model.__module__.startswith("birthnotify") and not model.__pydantic_complete__:
        unbuilt.append(f"{model.__module__}.{model.__qualname__}")
import gc
print(json.dumps({"xray": "aws_xray_sdk" in sys.modules, "xml": "defusedxml" in sys.modules,
                  "collecting": gc.isenabled(), "frozen": gc.get_freeze_count(),
                  "modules": sorted(name for name in sys.modules if name.startswith(("birthnotify", "aws_lambda"))),
                  "unbuilt": sorted(unbuilt)}))
"""


def _imports(function: str, **environ: str) -> dict[str, Any]:
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


USED_ONLY_BY = {
    "birthnotify.adapters.aws.ingest": {"ingest"},
    "birthnotify.application.ingest": {"ingest"},
    "birthnotify.application.pipeline": {"ingest"},
    "birthnotify.application.resume": {"ingest"},
    "birthnotify.adapters.aws.notify": {"notify"},
    "birthnotify.application.notify": {"notify"},
    "birthnotify.adapters.deliveries": {"notify"},
    "birthnotify.adapters.digest": {"notify"},
    "birthnotify.adapters.email": {"notify"},
    "birthnotify.adapters.mesh": {"mesh", "notify"},  # notify sends reports back by MESH
    "birthnotify.application.mesh": {"mesh", "notify"},
    "birthnotify.adapters.aws.mesh": {"mesh"},
    "birthnotify.adapters.lock": {"mesh"},
    "birthnotify.application.held": set(),  # the CLI's: held review
    "birthnotify.application.redeliver": set(),  # the CLI's: birthnotify redeliver
    "birthnotify.application.offline": set(),  # the CLI's: birthnotify validate
    "birthnotify.domain.fhir": set(),  # imported by ingest when a bundle file arrives
    "birthnotify.domain.nems": set(),
}
"""Modules (and their submodules) some functions do not need, with the functions that do: importing one at
cold start costs every cold start of the others its import and its pydantic models' schemas."""


@pytest.mark.parametrize("function", ["ingest", "notify", "mesh"])
def test_a_function_imports_no_other_functions_modules_at_cold_start(function: str) -> None:
    modules = set(_imports(function, POWERTOOLS_TRACE_DISABLED="true", LAMBDA_TASK_ROOT="/var/task")["modules"])
    assert f"birthnotify.adapters.aws.{function}" in modules  # the import did happen
    needless = sorted(
        name
        for name, users in USED_ONLY_BY.items()
        if function not in users and any(module == name or module.startswith(name + ".") for module in modules)
    )
    assert not needless, f"the {function} handler's import pulls in modules it does not need: {needless}"


UNBUILT_AT_INGEST_COLD_START = {
    "birthnotify.domain.held.ActionRecord",
    "birthnotify.domain.held.HeldAction",
    "birthnotify.domain.messages.HeldActionEvent",
    "birthnotify.domain.messages.MeshQuarantinedEvent",
    "birthnotify.shared.settings.MeshSettings",
    "birthnotify.shared.settings.NotifySettings",
    "birthnotify.shared.settings._Settings",
    "birthnotify.shared.settings.IngestSettings",  # built by service(), when it reads the environment
}


def test_the_ingest_functions_import_builds_the_schemas_of_exactly_the_models_a_file_needs() -> None:
    """Models only other functions validate are ``defer_build`` (pydantic builds a schema on first use; the
    test reads pydantic's ``__pydantic_complete__``, as of the pinned 2.x). Exactly these: a model a
    notification file needs is built at import, so deferring it would only move its cost to the first file."""
    found = _imports("ingest", POWERTOOLS_TRACE_DISABLED="true", LAMBDA_TASK_ROOT="/var/task")
    assert set(found["unbuilt"]) == UNBUILT_AT_INGEST_COLD_START


IN_LAMBDA = {"AWS_LAMBDA_RUNTIME_API": "127.0.0.1:9001"}
"""What Lambda's runtime sets in the process it imports a handler in (the local cloud and the tests do not)."""


def test_the_ingest_import_freezes_its_objects_and_leaves_the_garbage_collector_on() -> None:
    """The handler pauses the cyclic collector while it imports (its objects live as long as the container)
    and freezes them; collection must be on again for what the invocations make."""
    in_lambda = {"POWERTOOLS_TRACE_DISABLED": "true", "LAMBDA_TASK_ROOT": "/var/task", **IN_LAMBDA}
    found = _imports("ingest", **in_lambda)
    assert found["collecting"]
    assert found["frozen"] > 0
    assert _imports("notify", **in_lambda)["frozen"] == 0


SHARED_PROCESS = """
import gc, importlib.util, json, sys, weakref
if sys.argv[2] == "fail":
    sys.modules["birthnotify.adapters.aws.ingest"] = None  # its import fails part-way through the handler's
class Node:
    pass
node = Node()
node.cycle = node
gone = weakref.ref(node)
gc.collect()  # the node is now an old object of the process (as a finished test's or deployment's are)
del node  # and garbage in a cycle, before the handler's import: only a full collection frees it
spec = importlib.util.spec_from_file_location("handler", sys.argv[1])
try:
    spec.loader.exec_module(importlib.util.module_from_spec(spec))
    failed = False
except ImportError:
    failed = True
collecting = gc.isenabled()
gc.collect()
print(json.dumps({"failed": failed, "collecting": collecting, "freed": gone() is None}))
"""


@pytest.mark.parametrize("outcome", ["imported", "fail"])
def test_a_process_that_imports_the_handler_among_other_work_keeps_collecting_its_own_garbage(outcome: str) -> None:
    """The local cloud and the tests import the handler into a long-lived process of their own: the handler
    must neither freeze that process's objects (its garbage would never be freed: a test session grew by
    hundreds of MB) nor leave the collector off when its import fails."""
    env = {key: value for key, value in os.environ.items() if key != "AWS_LAMBDA_RUNTIME_API"}
    result = subprocess.run(  # noqa: S603
        [sys.executable, "-c", SHARED_PROCESS, str(ROOT / "functions" / "ingest" / "handler.py"), outcome],
        env=env | {"REGISTRY_PATH": str(REGISTRY_PATH), "POWERTOOLS_TRACE_DISABLED": "true"},
        check=True,
        capture_output=True,
        text=True,
    )
    found = json.loads(result.stdout.splitlines()[-1])
    assert found == {"failed": outcome == "fail", "collecting": True, "freed": True}


PARSER_MODELS = "aws_lambda_powertools.utilities.parser"


@pytest.mark.parametrize("function", ["ingest", "notify", "mesh"])
def test_a_cold_start_builds_none_of_powertools_parser_models(function: str) -> None:
    """Powertools' batch utility imports its parser's pydantic models (dozens of schemas) when pydantic was
    imported before it: a handler imports the batch utility before anything that imports pydantic."""
    modules = _imports(function, POWERTOOLS_TRACE_DISABLED="true", LAMBDA_TASK_ROOT="/var/task")["modules"]
    assert not [name for name in modules if name.startswith(PARSER_MODELS)]


def test_the_batch_utility_imports_the_parser_models_after_pydantic() -> None:
    """Why the import order above matters, held to the pinned Powertools (utilities.batch.types): should it
    stop doing so, the order no longer matters."""
    found = subprocess.run(  # noqa: S603
        [
            sys.executable,
            "-c",
            "import sys, pydantic, aws_lambda_powertools.utilities.batch; "
            f"print(any(name.startswith({PARSER_MODELS!r}) for name in sys.modules))",
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    assert found.stdout.strip() == "True"
