"""Every test runs against fake AWS credentials in eu-west-2: nothing can reach a real account."""

import os
from pathlib import Path
from typing import Any

import pytest
from clock_support import wait_out_the_day

ROOT = Path(__file__).resolve().parent.parent
REGION = "eu-west-2"

for _name, _value in {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_REGION": REGION,
    "POWERTOOLS_METRICS_NAMESPACE": "BirthNotificationsTest",
    "POWERTOOLS_SERVICE_NAME": "birthnotify-test",
    "POWERTOOLS_TRACE_DISABLED": "true",
    "POWERTOOLS_DEV": "false",
    "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20",
}.items():
    os.environ[_name] = _value
os.environ.pop("AWS_PROFILE", None)


_paused_coverage: Any = None


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Each test starts at least a few minutes before London midnight (clock_support.wait_out_the_day).

    Coverage of the package is measured over the unit and integration tests. Infra tests (CDK synthesis,
    cfn-lint, checkov) and e2e tests (an in-process moto server) run no rule of the package that those do
    not, and under tracing they would cost more than the rest of the suite together, so coverage pauses for
    them (before their fixtures are set up)."""
    global _paused_coverage
    wait_out_the_day()
    paused = bool(item.get_closest_marker("infra") or item.get_closest_marker("e2e"))
    if paused and _paused_coverage is None:
        try:
            import coverage
        except ImportError:
            return
        running = coverage.Coverage.current()
        if running is not None:
            running.stop()
            # Once stopped, Coverage.current() answers None: keep the instance to resume it.
            _paused_coverage = running
    elif not paused and _paused_coverage is not None:
        _paused_coverage.start()
        _paused_coverage = None


@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT


pytest_plugins = ["ingest_support", "notify_support", "mesh_support"]
