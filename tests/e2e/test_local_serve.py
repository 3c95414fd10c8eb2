"""`make serve`: the local cloud left running, reached as a user reaches it, from what it prints."""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from datetime import UTC, datetime

import boto3
import pytest
from birthnotify.adapters.reports import latest_report_key
from birthnotify.shared.clock import london_day
from birthnotify_cli.localcloud import LocalCloud, serve
from birthnotify_cli.synthetic import SyntheticRows, load_postcodes_by_district, to_bytes
from ingest_support import REGISTRY_PATH

pytestmark = pytest.mark.e2e


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_serve_prints_how_to_reach_it_and_processes_uploads_in_the_background(tmp_path):
    printed: list[str] = []
    stop = threading.Event()
    port = free_port()
    server = threading.Thread(target=serve, kwargs={"port": port, "workdir": tmp_path, "progress": printed.append,
                                                    "poll_interval_seconds": 0.1, "until": stop})
    server.start()
    try:
        deadline = time.monotonic() + 600  # a hang guard, not a speed limit
        while not any("s3 cp births.csv" in line for line in printed) and server.is_alive():
            assert time.monotonic() < deadline, printed
            time.sleep(0.1)
        usage = "\n".join(printed)
        assert f"http://127.0.0.1:{port}" in usage
        inbound, reports = (re.search(rf"s3://([^/\s]+)/{part}", usage).group(1) for part in ("inbound", "reports"))

        # What a user would do with the printed commands, here with boto3 and fake keys.
        s3 = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}", region_name="eu-west-2")
        postcodes = load_postcodes_by_district(REGISTRY_PATH.parent / "postcodes.csv")
        rows = list(SyntheticRows(postcodes, london_day(datetime.now(UTC)), seed=3).rows(25))
        s3.put_object(Bucket=inbound, Key="inbound/RX1/births.csv", Body=to_bytes(rows, "births.csv"))
        while True:  # the background poller runs ingest, which writes the report
            key = latest_report_key(s3, reports, "RX1", "births.csv")
            if key is not None:
                report = json.loads(s3.get_object(Bucket=reports, Key=key)["Body"].read())
                break
            assert time.monotonic() < deadline
            time.sleep(0.2)
        assert report["outcome"]["rows_in"] == 25
        assert any("invocations" in line for line in printed)
    finally:
        stop.set()
        server.join(60)
    assert not server.is_alive()


def test_a_port_in_use_is_refused_at_once(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(OSError, match="already running"):
            LocalCloud.start(tmp_path, port=taken.getsockname()[1])
