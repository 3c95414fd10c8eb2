"""Every test runs against fake AWS credentials in eu-west-2: nothing can reach a real account."""

import os
from pathlib import Path

import pytest

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


@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT

pytest_plugins = ["ingest_support", "notify_support"]
