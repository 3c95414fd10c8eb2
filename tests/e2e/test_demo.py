"""`make demo` end to end: what a newcomer sees on the local cloud is what the pipeline did."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from birthnotify_cli.demo import run_demo

pytestmark = pytest.mark.e2e


def test_the_demo_accounts_for_every_row_and_answers_each_route(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_demo(rows=60, output=tmp_path) == 0
    shown = capsys.readouterr().out

    reconciled = re.search(
        r"Reconciliation: (\d+) rows in = (\d+) forwarded \+ (\d+) rejected \+ (\d+) withheld \+ "
        r"(\d+) held",
        shown,
    )
    assert reconciled, shown
    rows_in, *outcomes = map(int, reconciled.groups())
    assert rows_in == 60 == sum(outcomes)
    # A bundle by S3 and one by MESH under NEMS' own workflow, each a row through the same rules.
    assert re.search(r"RX1 BirthNotificationWithMother\.xml +PROCESSED, 1 row: forwarded to Leeds City Council", shown)
    assert re.search(r"RX2 mesh-[0-9A-F]+\.xml +PROCESSED, 1 row: forwarded to City of Cardiff Council", shown)
    # The MESH trust reads both answers in its own MESH inbox; what came back balances too.
    reports = [json.loads(path.read_text()) for path in tmp_path.glob("report-*.json")]
    assert sorted(report["outcome"]["rows_in"] for report in reports) == [1, 20]
    for report in reports:
        outcome = report["outcome"]
        assert outcome["rows_in"] == (
            outcome["forwarded"] + outcome["rejected"] + outcome["withheld"] + outcome["held"]
        )
    # York's held records (at least one: its agreement has lapsed) are released once an agreement is added to a
    # copy of the registry, and each reaches York's queue once; the others stay held.
    york_held = re.search(r"(\d+)  NO_AGREEMENT City of York Council \(E06000014\)", shown)
    released = re.search(r"(\d+) records? (?:was|were) released:", shown)
    on_queue = re.search(r"City of York Council's queue now holds (\d+) records, each released once", shown)
    assert york_held and released and on_queue, shown
    assert int(york_held.group(1)) == int(released.group(1)) == int(on_queue.group(1)) >= 1
    assert "Held records released: " in shown
    # Emails carry counts and references only.
    emails = json.loads((tmp_path / "emails.json").read_text())
    assert emails and not re.search(r"\b999\d{7}\b", json.dumps(emails))
    # The IG lead's questions, answered from the sharing ledger: one baby's disclosures (a council, an agreement,
    # the fields it allowed) and the register, whose counts add up to the records forwarded and released.
    audit = re.search(r"Subject access: .*?\n(.*?)\nThe data-sharing register", shown, flags=re.DOTALL)
    assert audit and "FORWARDED" in audit.group(1) and "fields shared: " in audit.group(1), shown
    register = re.search(r"The data-sharing register .*\n    council +gss_code.*\n((?:    .*\n)+)", shown)
    assert register, shown
    york_renewed = re.search(r"City of York Council +E06000014 +YORK-HCS-\d{4}-RENEWED .* (\d+)\n", register.group(1))
    assert york_renewed and int(york_renewed.group(1)) == int(released.group(1)), register.group(1)
