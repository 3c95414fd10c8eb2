"""`make serve`: the local cloud left running, with IAM enforced, reached as a user reaches it: the commands it
prints, run as they are printed (the AWS CLI this project installs, the birthnotify CLI)."""

from __future__ import annotations

import json
import os
import re
import shlex
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from birthnotify_cli.localcloud import LocalCloud, serve

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent  # the venv's bin: .venv/bin/aws, .venv/bin/birthnotify


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def printed_commands(usage: str) -> tuple[dict[str, str], list[str]]:
    """The exported variables and the commands of the printed usage, continuation lines joined."""
    lines = usage.replace("\\\n", " ").splitlines()
    [export] = [line.strip() for line in lines if line.strip().startswith("export ")]
    variables = dict(word.split("=", 1) for word in shlex.split(export)[1:])
    commands = [line.strip() for line in lines if re.match(r"\s+(\.venv/bin/|AWS_PROFILE=)", line)]
    return variables, commands


def run(command: str, variables: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    words = shlex.split(command)
    environment = {name: value for name, value in os.environ.items() if not name.startswith("AWS_")}
    environment.update(variables, HOME=str(cwd))  # the AWS CLI caches assumed roles under ~/.aws/cli/cache
    while "=" in words[0]:  # NAME=value prefixes
        name, value = words.pop(0).split("=", 1)
        environment[name] = value
    words[0] = str(BIN / Path(words[0]).name) if words[0].startswith(".venv/bin/") else words[0]
    return subprocess.run(  # noqa: S603
        words,
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )  # the commands the local cloud printed


def test_serve_prints_how_to_act_as_a_trust_and_a_council_and_those_commands_work(tmp_path):
    printed: list[str] = []
    stop = threading.Event()
    port = free_port()
    server = threading.Thread(
        target=serve,
        kwargs={
            "port": port,
            "workdir": tmp_path / "cloud",
            "progress": printed.append,
            "poll_interval_seconds": 0.1,
            "until": stop,
        },
    )
    server.start()
    try:
        deadline = time.monotonic() + 600  # a hang guard, not a speed limit
        while not any("consume" in line for line in printed) and server.is_alive():
            assert time.monotonic() < deadline, printed
            time.sleep(0.1)
        usage = "\n".join(printed)
        assert f"http://127.0.0.1:{port}" in usage and "IAM is enforced" in usage
        variables, commands = printed_commands(usage)
        generate, upload, report, peek, consume, mesh_send, mesh_receive = commands
        work = tmp_path / "user"
        work.mkdir()

        for command in (generate, upload):
            done = run(command, variables, work)
            assert done.returncode == 0, (command, done.stderr)
        while not list((work / "reports").glob("*.json")):  # until the pipeline wrote the upload's report
            fetched = run(report, variables, work)
            assert fetched.returncode == 0 and time.monotonic() < deadline, fetched.stderr
            time.sleep(0.3)
        [report_file] = (work / "reports").glob("*.json")
        outcome = json.loads(report_file.read_text())["outcome"]
        assert outcome["rows_in"] == 200
        leeds = next(a for a in outcome["authorities"] if a["gss_code"] == "E08000035")

        # The console named the file with its counts; the function's log has the invocation already.
        while not any("inbound/RX1/births.csv: PROCESSED, 200 rows in" in line for line in printed):
            assert time.monotonic() < deadline, printed[-5:]
            time.sleep(0.1)
        log = tmp_path / "cloud" / "logs" / "birthnotify-local-ingest.log"
        assert '"message":"file processed"' in log.read_text()

        looked = run(peek, variables, work)  # looking takes nothing away
        assert looked.returncode == 0 and len(json.loads(looked.stdout)["Messages"]) == 10, looked.stderr
        consumed = run(consume, variables, work)
        assert consumed.returncode == 0, consumed.stderr
        written = list(work.glob("births-E08000035.csv"))
        records = written[0].read_text().splitlines()[1:] if written else []
        assert len(records) == leeds["new"] + leeds["amend"] + leeds["cancel"], consumed.stderr

        # Trust RX2 sends the same file by MESH: the background runtime fires the mesh schedule (every minute,
        # the first at once), the pipeline processes it, and the report comes back to RX2's mailbox.
        sent = run(mesh_send, variables, work)
        assert sent.returncode == 0, sent.stderr
        message_id = sent.stdout.strip().rsplit(" ", 1)[-1]
        while not any(f"inbound/RX2/mesh-{message_id}.csv: PROCESSED, 200 rows in" in line for line in printed):
            assert time.monotonic() < deadline, printed[-5:]
            time.sleep(0.2)
        while not list((work / "mesh-reports").glob("*.json")):
            received = run(mesh_receive, variables, work)
            assert received.returncode == 0 and time.monotonic() < deadline, received.stderr
            time.sleep(0.3)
        [mesh_report] = (work / "mesh-reports").glob("*.json")
        assert mesh_report.name == f"report-{message_id}.json"
        assert json.loads(mesh_report.read_text())["outcome"] == outcome  # RX2's own report of the same rows

        # What a trust may not do: upload under another trust's prefix.
        other = upload.replace("/inbound/RX1/", "/inbound/RX2/")
        refused = run(other, variables, work)
        assert refused.returncode != 0 and "AccessDenied" in refused.stderr
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
