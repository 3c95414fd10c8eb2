"""The destination index: a file's forwards are merged into the trust's index even when another file's run
wrote it in between (S3 conditional writes, on moto), and chains no AMEND or CANCEL can reach any more go."""

from __future__ import annotations

from datetime import date

import boto3
import pytest
from birthnotify.adapters.ledger import S3Destinations
from birthnotify.application.destinations import Destinations
from moto import mock_aws

DAY = date(2026, 11, 25)


@pytest.fixture
def store():
    with mock_aws():
        s3 = boto3.client("s3", region_name="eu-west-2")
        s3.create_bucket(Bucket="ledger-test", CreateBucketConfiguration={"LocationConstraint": "eu-west-2"})
        yield S3Destinations(s3, "ledger-test")


def test_two_files_of_a_trust_processed_at_once_both_keep_their_forwards(store):
    first, second = Destinations.load(store, "RX1"), Destinations.load(store, "RX1")  # both read "none yet"
    first.add("N-1", "E08000035", "LEEDS-BN-2026")
    second.add("N-2", "E10000016", "KENT-FH-2026")
    first.save(store, "RX1", DAY, 366)
    second.save(store, "RX1", DAY, 366)  # its conditional write fails once; it reads again and merges

    index = Destinations.load(store, "RX1")
    assert index.previous("N-1") == {"E08000035": "LEEDS-BN-2026"}
    assert index.previous("N-2") == {"E10000016": "KENT-FH-2026"}
    assert store.stats.requests == 2 + 2 + 2 + 1  # two reads, two writes, the lost write's re-read and retry


def test_a_chain_gains_councils_and_old_chains_are_dropped(store):
    old = Destinations.load(store, "RX1")
    old.add("N-OLD", "E08000035", "LEEDS-BN-2026")
    old.save(store, "RX1", date(2025, 1, 1), 366)
    later = Destinations.load(store, "RX1")
    later.add("N-1", "E08000035", "LEEDS-BN-2026")
    later.save(store, "RX1", DAY, 366)
    amend = Destinations.load(store, "RX1")
    amend.add("N-1", "E10000016", "KENT-FH-2026")
    amend.save(store, "RX1", DAY, 366)

    index = Destinations.load(store, "RX1")
    assert index.previous("N-1") == {"E08000035": "LEEDS-BN-2026", "E10000016": "KENT-FH-2026"}
    assert index.previous("N-OLD") == {}  # 2025-01-01 is more than 366 + 60 days before 2026-11-25


def test_a_council_told_the_family_moved_out_is_remembered_until_it_has_them_again(store):
    first = Destinations.load(store, "RX1")
    first.add("N-1", "E08000035", "LEEDS-BN-2026")
    first.add("N-2", "E08000035", "LEEDS-BN-2026")
    first.save(store, "RX1", DAY, 366)
    moved = Destinations.load(store, "RX1")
    assert moved.moved_out_of("N-1") == set()
    moved.add("N-1", "E10000016", "KENT-FH-2026")
    moved.told_moved_out("N-1", "E08000035")
    moved.save(store, "RX1", DAY, 366)

    back = Destinations.load(store, "RX1")
    assert back.moved_out_of("N-1") == {"E08000035"}
    assert back.moved_out_of("N-2") == set()  # a chain the second file did not touch is kept as it was
    assert back.previous("N-2") == {"E08000035": "LEEDS-BN-2026"}
    back.add("N-1", "E08000035", "LEEDS-BN-2026")  # the family is back in Leeds
    assert back.moved_out_of("N-1") == set()
    back.save(store, "RX1", DAY, 366)
    assert Destinations.load(store, "RX1").moved_out_of("N-1") == set()
