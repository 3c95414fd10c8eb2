"""Syntheses shared by the infrastructure tests: each is done once per test session (per xdist worker).

``dev`` is what ``make synth`` produces (default context, every check enforced). ``full`` is a prod stage
with every optional resource (GOV.UK Notify secret, held-queue reviewer role), synthesized in audit mode:
acknowledgements recorded but not applied, so the tests can match findings and acknowledgements.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # the infra package lives at the repository root
    sys.path.insert(0, str(ROOT))

from aws_cdk.assertions import Template  # noqa: E402

from infra.app import Synthesis, synth_app  # noqa: E402
from infra.docs import DOCUMENTED_CONTEXT, DOCUMENTED_STAGE  # noqa: E402


@pytest.fixture(scope="session")
def dev(tmp_path_factory: pytest.TempPathFactory) -> Synthesis:
    return synth_app("dev", tmp_path_factory.mktemp("cdk-dev"))


@pytest.fixture(scope="session")
def dev_template(dev: Synthesis) -> Template:
    return Template.from_json(dev.template)


@pytest.fixture(scope="session")
def full(tmp_path_factory: pytest.TempPathFactory) -> Synthesis:
    return synth_app(DOCUMENTED_STAGE, tmp_path_factory.mktemp("cdk-full"), DOCUMENTED_CONTEXT, audit=True)


@pytest.fixture(scope="session")
def full_template(full: Synthesis) -> Template:
    return Template.from_json(full.template)
