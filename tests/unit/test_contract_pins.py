"""The published message models are the contract's own: SharedRecord carries exactly the shareable fields
of the upload record, with values that survive the trip unchanged."""

from __future__ import annotations

from datetime import date

from birthnotify.domain.messages import SharedRecord
from birthnotify.domain.record import SHAREABLE_FIELDS, BirthNotification
from birthnotify_cli.synthetic import Mix, SyntheticRows, load_postcodes_by_district
from ingest_support import REGISTRY_PATH


def test_shared_record_has_exactly_the_shareable_fields():
    assert set(SharedRecord.model_fields) == SHAREABLE_FIELDS


def test_every_valid_record_serialises_into_a_shared_record_unchanged():
    postcodes = load_postcodes_by_district(REGISTRY_PATH.parent / "postcodes.csv")
    rows = SyntheticRows(postcodes, date(2026, 11, 20), seed=5, mix=Mix(invalid=0, withheld=0, held=0)).rows(300)
    everything = dict.fromkeys(sorted(SHAREABLE_FIELDS), True)
    for row in rows:
        record = BirthNotification.model_validate({k: v for k, v in row.items() if v})
        shared = SharedRecord.model_validate_json(record.model_dump_json(include=everything, exclude_none=True))
        assert shared.model_dump(exclude_none=True) == record.model_dump(include=everything, exclude_none=True)
