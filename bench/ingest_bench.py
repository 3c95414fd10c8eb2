"""`make bench`: the goals of issue 17, each measured in this run beside its target.

- Cold start: a fresh interpreter importing the ingest handler and building its service (what the first
  invocation sets up), next to one importing boto3 and making an SQS client (target <= 1.5x); also with
  bytecode for the runtime's own modules only, as Lambda ran layers shipped without bytecode.
- CPU: microseconds per row for read + validate + route + serialise + send through a real botocore SQS client
  whose HTTP layer answers in-process (``bench.stubbed_sqs``; its own CPU is subtracted), next to bare
  ``csv.reader`` over the same file (target <= 15x). The held store's DynamoDB writes and the sharing ledger's
  S3 writes go to stand-ins.
- Throughput: records a second with every SQS request taking a simulated 15 ms round trip (target >= 5,000;
  a 1M-row file within one 15-minute invocation).
- Resume: the CPU a resumed run spends on the rows before its checkpoint, per row: replaying them (no snapshot)
  and restoring the snapshot a stopped run saves (loading it, hashing the content, skipping the lines unparsed).
- Requests: every AWS call of ingest and notify for a 1,000- and a 10,000-row file, on moto (target <= 110
  per 1,000 records, <= 20 fixed per file).
- Memory: peak RSS of a child process that ingests 10k and then 1M rows from a gzipped file (target flat,
  <= 256 MB); and of one refusing a gzip bomb.
"""

from __future__ import annotations

import argparse
import csv
import gc
import gzip
import io
import os
import statistics
import subprocess
import sys
import time
import zlib
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from birthnotify.adapters.held import DynamoHeldWriter
from birthnotify.adapters.ledger import S3Destinations, S3Ledger
from birthnotify.adapters.sqs import BatchSender
from birthnotify.application.destinations import Destinations
from birthnotify.application.ledger import LedgerRecorder, SubjectHasher
from birthnotify.application.pipeline import FileIncomplete, FilePipeline, Source
from birthnotify.application.ports import Progress
from birthnotify.application.resume import ResumeContext, ResumeSnapshot, concealer, restore, take_snapshot
from birthnotify.domain.postcodes import PostcodeDirectory
from birthnotify.domain.reader import FileKind, FileRejected, RowReader, content_sha256, scan_file
from birthnotify.domain.registry import load_registry
from birthnotify.domain.routing import Router
from birthnotify.domain.validation import RowRules, RowValidator
from birthnotify.shared.settings import DEFAULT_MAX_FILE_BYTES
from birthnotify_cli.synthetic import Mix, SyntheticRows, load_postcodes_by_district, write_file

from bench.memory import peak_rss_mb as own_peak_rss_mb
from bench.stubbed_sqs import CannedSqs, stubbed_sqs_client

ROOT = Path(__file__).resolve().parent.parent
REGISTRY = ROOT / "config" / "registry.toml"
WORK = ROOT / "build" / "bench"
UPLOAD_DAY = date(2026, 11, 20)
MAX_BYTES = DEFAULT_MAX_FILE_BYTES
REQUEST_WARM_UP = 200
"""Rows of the file a container ingests before the files whose requests are counted warm."""
MIX = Mix(invalid=0.02, withheld=0.02, held=0.01, amend_cancel=0.03)
SQS_ROUND_TRIP_SECONDS = 0.015
LAMBDA_SECONDS = 15 * 60
CONCEAL = concealer(b"bench-ledger-key-of-32-bytes-or-more")


class LedgerS3:
    """A stand-in S3 client for the ledger bucket: counts requests, keeps the destination index (and only the
    size of ledger objects, which the function does not keep either)."""

    def __init__(self) -> None:
        self.requests = 0
        self.objects: dict[str, bytes] = {}
        self.ledger_objects = 0

    def put_object(self, Bucket: str, Key: str, Body: bytes, **options: str) -> dict:  # noqa: N803
        self.requests += 1
        if Key.startswith("ledger/"):
            self.ledger_objects += 1
        else:
            self.objects[Key] = Body
        return {"ETag": f'"{len(self.objects)}"'}

    def get_object(self, Bucket: str, Key: str) -> dict:  # noqa: N803
        from botocore.exceptions import ClientError

        self.requests += 1
        if Key not in self.objects:
            raise ClientError({"Error": {"Code": "NoSuchKey", "Message": "none"}}, "GetObject")
        return {"Body": io.BytesIO(self.objects[Key]), "ETag": '"1"'}


class AcceptingDynamo:
    """A stand-in DynamoDB client for the held store that stores every item and counts requests."""

    def __init__(self) -> None:
        self.requests = 0
        self.items = 0

    def batch_write_item(self, RequestItems: dict) -> dict:  # noqa: N803
        self.requests += 1
        self.items += sum(len(requests) for requests in RequestItems.values())
        return {"UnprocessedItems": {}}


def generated_file(rows: int, suffix: str = ".csv") -> Path:
    """A synthetic upload file, cached under build/bench/ (generation is slower than ingest).

    Valid babies live where a council has an agreement in force on the upload day (as a trust's births mostly
    do), so the rows withheld and held are MIX's share; the rest of the directory's districts are where MIX's
    held rows live. (Until this stop the files spread babies over every district of the development
    directory, so 28-52% of rows were held for want of an agreement, against the 1% the header claimed.)"""
    path = WORK / f"births-v2-{rows}{suffix}"
    if not path.exists():
        WORK.mkdir(parents=True, exist_ok=True)
        registry = load_registry(REGISTRY)
        postcodes = load_postcodes_by_district(REGISTRY.parent / registry.postcode_directory.file)
        agreed = {
            district
            for district in postcodes
            if (authority := registry.authority(district)) is not None and authority.agreement_on(UPLOAD_DAY)
        }
        unagreed = tuple(district for district in postcodes if district not in agreed)
        partial = path.with_name("partial-" + path.name)  # the name keeps the format suffixes
        generator = SyntheticRows(postcodes, UPLOAD_DAY, seed=rows, mix=MIX, held_districts=unagreed)
        write_file(partial, generator.rows(rows))
        partial.rename(path)
    return path


@dataclass
class Run:
    rows: int
    sqs: CannedSqs
    pipeline: FilePipeline
    cpu_seconds: float
    wall_seconds: float
    stopped_at: int | None = None
    snapshot: bytes | None = None
    """What the stopped run saved for the next (application.resume), as stored."""
    ready_cpu_seconds: float = 0.0
    """CPU from the start until the first row after the checkpoint was read (or the rows ended): for a resumed
    run, everything it spent to get past the rows before its checkpoint."""


def _marking(rows: Any, after: int, marks: list[float]) -> Any:
    """The rows, noting the CPU clock when the first row after ``after`` is read (or when there is none)."""
    for raw in rows:
        if raw.row > after and not marks:
            marks.append(time.process_time())
        yield raw
    if not marks:
        marks.append(time.process_time())


_CONTEXT: dict[str, Any] = {}


def _context() -> tuple[Any, PostcodeDirectory]:
    """The registry and postcode directory, loaded once (as a warm function has them)."""
    if not _CONTEXT:
        registry = load_registry(REGISTRY)
        _CONTEXT["registry"] = registry
        _CONTEXT["postcodes"] = PostcodeDirectory.load(
            REGISTRY.parent / registry.postcode_directory.file, registry.postcode_directory
        )
    return _CONTEXT["registry"], _CONTEXT["postcodes"]


class PlainSqs:
    """An SQS client with no SDK behind it (accepts every entry): what this code costs without botocore's."""

    def __init__(self, canned: CannedSqs) -> None:
        self._canned = canned

    def send_message_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> dict[str, Any]:  # noqa: N803
        self._canned.requests += 1
        self._canned.entries += len(Entries)
        return {"Successful": [{"Id": e["Id"], "MessageId": e["Id"]} for e in Entries], "Failed": []}


def run_pipeline(
    path: Path,
    *,
    round_trip: float = 0.0,
    resume: Progress | None = None,
    stop_after: int | None = None,
    without_sdk: bool = False,
    snapshot: bytes | None = None,
) -> Run:
    """Ingest a local file exactly as the function does (both passes), sending through a real botocore SQS
    client answered in-process (``without_sdk``: through PlainSqs); ``stop_after`` stops (and checkpoints) at
    that row, as a timeout would, and keeps the snapshot; with ``snapshot`` (and ``resume``), resumes from it as
    a redelivered file does: the content hashed, not parsed, the snapshot decoded and restored, the lines
    before it skipped."""
    registry, postcodes = _context()
    canned = CannedSqs(round_trip_seconds=round_trip)
    held = AcceptingDynamo()  # the held store's writes: a stand-in
    ledger_s3 = LedgerS3()  # the sharing ledger's bucket: a stand-in
    client = PlainSqs(canned) if without_sdk else stubbed_sqs_client(canned)
    kind = FileKind.from_name(path.name)
    cpu_started, wall_started = time.process_time(), time.perf_counter()
    context = ResumeContext("RX1", "0" * 64, UPLOAD_DAY, UPLOAD_DAY, 366)
    restored = ResumeSnapshot.decode(snapshot) if snapshot is not None else None
    if restored is not None:
        content_sha256(lambda: path.open("rb"), kind, MAX_BYTES)  # how the function finds the snapshot
        facts = restored.facts
    else:
        facts = scan_file(lambda: path.open("rb"), kind, MAX_BYTES)  # the first pass, as the function makes it
    with path.open("rb") as stream:
        pipeline = FilePipeline(
            source=Source("RX1", f"inbound/RX1/{path.name}", "0" * 64),
            validator=RowValidator(RowRules(UPLOAD_DAY, 366)),
            router=Router(registry, postcodes, UPLOAD_DAY),
            sender_factory=lambda on_accepted: BatchSender(client, on_accepted),
            queue_url=lambda gss_code: f"https://sqs.eu-west-2.amazonaws.com/000000000000/{gss_code}.fifo",
            held_writer_factory=lambda on_stored, conditional: DynamoHeldWriter(
                held, "held", on_stored, conditional=conditional, retention_days=400
            ),
            ledger=LedgerRecorder(
                S3Ledger(ledger_s3, "ledger"),
                trust_ods_code="RX1",
                file_sha256="0" * 64,
                day=UPLOAD_DAY,
                clock=lambda: datetime.now(UTC),
            ),
            hasher=SubjectHasher(b"bench-ledger-key-of-32-bytes-or-more"),
            destinations=(destinations := Destinations.load(S3Destinations(ledger_s3, "ledger"), "RX1")),
        )
        stopped_at, saved = None, None
        if restored is not None:
            restore(restored, pipeline, destinations)
        reader = RowReader(
            stream,
            kind,
            facts,
            MAX_BYTES,
            start=restored.position if restored else None,
            unknown=restored.unknown_columns if restored else None,
            conceal=CONCEAL,
        )
        marks: list[float] = []
        try:
            tally = pipeline.run(
                _marking(reader, resume.rows_done if resume else 0, marks),
                resume=resume,
                should_stop=(lambda: pipeline.tally.rows_in >= stop_after) if stop_after else (lambda: False),
            )
            assert tally.outcome().balanced
            destinations.save(S3Destinations(ledger_s3, "ledger"), "RX1", UPLOAD_DAY, 366)
        except FileIncomplete as incomplete:
            stopped_at = incomplete.rows_done
            saved = take_snapshot(context, facts, pipeline, reader, destinations, CONCEAL).encode()
    cpu = time.process_time() - cpu_started
    cpu -= canned.requests * canned.cost_per_request()  # the stub's answers are not the client's work
    ready = (marks[0] if marks else time.process_time()) - cpu_started
    return Run(
        pipeline.tally.rows_in, canned, pipeline, cpu, time.perf_counter() - wall_started, stopped_at, saved, ready
    )


def bare_csv_seconds(path: Path) -> float:
    started = time.process_time()
    with path.open(newline="", encoding="utf-8") as handle:
        for _ in csv.reader(handle):
            pass
    return time.process_time() - started


def best_of(runs: int, measure: Any) -> float:
    return float(min(measure() for _ in range(runs)))


def cpu_figures(rows: int) -> dict[str, float]:
    path = generated_file(rows)
    gc.collect()
    bare = best_of(3, lambda: bare_csv_seconds(path))
    full = best_of(3, lambda: run_pipeline(path).cpu_seconds)
    own = best_of(3, lambda: run_pipeline(path, without_sdk=True).cpu_seconds)
    sqs = run_pipeline(path).sqs
    return {
        "bare_us": bare / rows * 1e6,
        "pipeline_us": full / rows * 1e6,
        "ratio": full / bare,
        "own_us": own / rows * 1e6,
        "sdk_us_per_record": (full - own) / sqs.entries * 1e6,
        "sdk_us_per_request": (full - own) / sqs.requests * 1e6,
        "records_per_batch": sqs.entries / sqs.requests,
        "requests": sqs.requests,
    }


def throughput_figures(rows: int) -> dict[str, float]:
    """Records a second, wall clock, with each SQS request taking ``SQS_ROUND_TRIP_SECONDS``."""
    run = run_pipeline(generated_file(rows), round_trip=SQS_ROUND_TRIP_SECONDS)
    per_second = run.sqs.entries / run.wall_seconds
    return {
        "records_per_second": per_second,
        "seconds": run.wall_seconds,
        "records": run.sqs.entries,
        "million_rows_minutes": 1_000_000 / (run.rows / run.wall_seconds) / 60,
    }


def resume_figures(rows: int) -> dict[str, float]:
    """A run stopped at 90% of a file (as a timeout would stop it), then resumed from its checkpoint, by
    replaying the rows before it (no snapshot: a hard crash) and from the stopped run's snapshot. A row before
    the checkpoint costs the CPU the resumed run spends until it reads the first row after it (nothing
    subtracted: with a snapshot, that is decoding and restoring it, hashing the content and skipping the
    lines unparsed), divided by the rows before it."""
    path = generated_file(rows)
    stop_at = rows * 9 // 10
    first = run_pipeline(path, stop_after=stop_at)
    assert first.stopped_at == stop_at and first.snapshot is not None, first.stopped_at
    progress = first.pipeline.progress(UPLOAD_DAY)
    full = min((run_pipeline(path) for _ in range(2)), key=lambda run: run.cpu_seconds)
    replayed = min((run_pipeline(path, resume=progress) for _ in range(2)), key=lambda run: run.cpu_seconds)
    restored = min(
        (run_pipeline(path, resume=progress, snapshot=first.snapshot) for _ in range(3)),
        key=lambda run: run.ready_cpu_seconds,
    )
    assert restored.pipeline.tally.outcome() == replayed.pipeline.tally.outcome() == full.pipeline.tally.outcome()
    return {
        "checkpoint_row": stop_at,
        "full_seconds": full.cpu_seconds,
        "row_us": full.cpu_seconds / rows * 1e6,
        "replayed_seconds": replayed.cpu_seconds,
        "replayed_row_us": replayed.ready_cpu_seconds / stop_at * 1e6,
        "restored_seconds": restored.cpu_seconds,
        "skipped_row_us": restored.ready_cpu_seconds / stop_at * 1e6,
        "snapshot_kb": len(first.snapshot) / 1024,
    }


COLD_BASELINE = """
import time
started = time.perf_counter()
import boto3
boto3.client("sqs")
print(time.perf_counter() - started)
"""

COLD_FLOOR = """
import time
started = time.perf_counter()
import gc
gc.disable()  # as the ingest handler does during its imports
import boto3
import aws_lambda_powertools.utilities.batch, aws_lambda_powertools.utilities.data_classes
import aws_lambda_powertools.utilities.idempotency, aws_lambda_powertools.utilities.streaming
from aws_lambda_powertools import Logger, Metrics
import pydantic  # after Powertools' batch, which loads its parser's models when pydantic is already imported
gc.freeze()
gc.enable()
for service in ("s3", "sqs", "dynamodb", "secretsmanager"):
    boto3.client(service)
print(time.perf_counter() - started)
"""
"""What no version of the ingest function can avoid at a cold start: the libraries it is built on (boto3, pydantic,
the Powertools utilities it uses) and the four clients it needs, with none of this project's code."""

COLD_HANDLER = """
import time
started = time.perf_counter()
import importlib.util, sys
sys.path.insert(0, {root!r})
spec = importlib.util.spec_from_file_location("handler", {root!r} + "/handler.py")
handler = importlib.util.module_from_spec(spec)
spec.loader.exec_module(handler)
imported = time.perf_counter()
import boto3, json
from botocore.awsrequest import AWSResponse
class Raw:
    def stream(self, **_):
        yield json.dumps({{"SecretString": "k" * 64, "Name": "ledger-key"}}).encode()
# The ledger key's GetSecretValue is answered in-process (its round trip is not counted, its CPU is).
boto3.setup_default_session()
boto3.DEFAULT_SESSION.events.register("before-send.secrets-manager",
                                      lambda request, **_: AWSResponse(request.url, 200, {{}}, Raw()))
handler.service()
print(imported - started, time.perf_counter() - started, "aws_xray_sdk" in sys.modules)
"""


RUNTIME_PROVIDED = ("boto3", "botocore", "s3transfer", "urllib3", "dateutil", "jmespath", "six.py")
"""What the Lambda Python runtime itself provides (with the standard library), compiled as the runtime ships it."""


def runtime_only_bytecode() -> Path:
    """A ``-X pycache_prefix`` tree holding bytecode of the standard library and RUNTIME_PROVIDED only (built once):
    an interpreter pointed at it (and not writing bytecode) compiles everything else at every start, as Lambda
    did for a layer shipped without bytecode (layers are read-only)."""
    import sysconfig

    prefix = WORK / f"pycache-runtime-{sys.implementation.cache_tag}"
    if not prefix.is_dir():
        partial = prefix.with_name(prefix.name + ".partial")
        site = Path(sysconfig.get_paths()["purelib"])
        trees = [sysconfig.get_paths()["stdlib"], *(str(site / name) for name in RUNTIME_PROVIDED)]
        subprocess.run(  # noqa: S603
            [sys.executable, "-X", f"pycache_prefix={partial}", "-m", "compileall", "-q", "-j", "0", *trees],
            check=False,  # the standard library's test data holds files that do not compile, on purpose
            capture_output=True,
        )
        partial.rename(prefix)
    return prefix


def cold_start_figures(runs: int) -> dict[str, float]:
    """Medians over fresh interpreters, baseline and handler interleaved (so load on the machine hits both).

    The handler is measured twice: with bytecode for everything (the layers as synthesis now builds them, given
    a CPython 3.13) and with bytecode for the runtime's own modules only (the layers as shipped before)."""
    env = {
        "AWS_DEFAULT_REGION": "eu-west-2",
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "PATH": "/usr/bin:/bin",
        "STAGE": "dev",
        "REGISTRY_PATH": str(REGISTRY),
        "INBOUND_BUCKET": "inbound",
        "REPORTS_BUCKET": "reports",
        "AUTHORITY_QUEUE_PREFIX": "bench",
        "QUEUE_URL_BASE": "https://sqs.eu-west-2.amazonaws.com/000000000000/",
        "STATE_TABLE": "state",
        "HELD_TABLE": "held",
        "LEDGER_BUCKET": "ledger",
        "LEDGER_KEY_SECRET_ID": "ledger-key",
        "FILE_EVENTS_QUEUE_URL": "https://sqs.eu-west-2.amazonaws.com/000000000000/events",
        "AWS_LAMBDA_RUNTIME_API": "127.0.0.1:9001",  # a process of the function's own, as Lambda's runtime starts
    }
    env |= {name: os.environ[name] for name in ("PYTHONPATH",) if name in os.environ}
    script = COLD_HANDLER.format(root=str(ROOT / "functions" / "ingest"))
    no_layer_bytecode = ["-X", f"pycache_prefix={runtime_only_bytecode()}"]
    source_env = env | {"PYTHONDONTWRITEBYTECODE": "1"}
    _python(script, env)  # bytecode for every module, written once
    baseline, imported, ready, from_source, floor, xray = [], [], [], [], [], False
    for _ in range(runs):
        baseline.append(float(_python(COLD_BASELINE, env)))
        floor.append(float(_python(COLD_FLOOR, env)))
        imported_s, ready_s, xray_s = _python(script, env).split()
        imported.append(float(imported_s))
        ready.append(float(ready_s))
        xray = xray or xray_s == "True"
        from_source.append(float(_python(script, source_env, no_layer_bytecode).split()[1]))
    base = statistics.median(baseline)
    return {
        "baseline_ms": base * 1e3,
        "import_ms": statistics.median(imported) * 1e3,
        "ready_ms": statistics.median(ready) * 1e3,
        "ratio": statistics.median(ready) / base,
        "floor_ms": statistics.median(floor) * 1e3,
        "floor_ratio": statistics.median(floor) / base,
        "source_ms": statistics.median(from_source) * 1e3,
        "source_ratio": statistics.median(from_source) / base,
        "xray_imported": xray,
    }


def _python(script: str, env: dict[str, str], options: list[str] | None = None) -> str:
    result = subprocess.run(  # noqa: S603
        [sys.executable, *(options or []), "-c", script],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    return result.stdout.strip().splitlines()[-1]


def peak_rss_mb(rows: int) -> float:
    """Peak RSS of a fresh interpreter that ingests a gzipped file of ``rows`` rows."""
    return child_rss_mb(generated_file(rows, ".csv.gz"))


def child(path: Path) -> None:
    if path.name.startswith("bomb"):
        try:
            scan_file(lambda: path.open("rb"), FileKind.from_name(path.name), MAX_BYTES)
        except FileRejected as rejection:
            assert rejection.code.value == "FILE_TOO_LARGE", rejection.code
    else:
        run_pipeline(path)
    print(own_peak_rss_mb())


def gzip_bomb() -> Path:
    """One gzip member of 2 GiB of zeros (about 2 MB), cached: what a hostile upload looks like."""
    path = WORK / "bomb-2gib.csv.gz"
    if not path.exists():
        WORK.mkdir(parents=True, exist_ok=True)
        compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
        block = b"\0" * 2**20
        with open(path.with_suffix(".partial"), "wb") as handle:
            for _ in range(2048):
                handle.write(compressor.compress(block))
            handle.write(compressor.flush())
        path.with_suffix(".partial").rename(path)
    return path


def child_rss_mb(path: Path) -> float:
    result = subprocess.run(  # noqa: S603
        [sys.executable, "-m", "bench.ingest_bench", "--child", str(path)],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    )
    return float(result.stdout.strip().splitlines()[-1])


def _goal(out: io.StringIO, name: str, measured: str, target: str, met: bool) -> None:
    out.write(f"  {'met ' if met else 'MISS'}  {name:<44} {measured:<34} target {target}\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--throughput-rows", type=int, default=20_000)
    parser.add_argument("--request-rows", type=int, nargs=2, default=(1_000, 2_000))
    parser.add_argument("--memory-rows", type=int, nargs=2, default=(10_000, 1_000_000))
    parser.add_argument("--cold-runs", type=int, default=7)
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child)
        return
    from bench.aws_requests import per_file_figures  # moto: imported only by the parent

    print(f"generating / reusing synthetic files in {WORK.relative_to(ROOT)} ...", flush=True)
    cold = cold_start_figures(args.cold_runs)
    cpu = cpu_figures(args.rows)
    flow = throughput_figures(args.throughput_rows)
    resume = resume_figures(args.rows)
    small_rows, large_rows = args.request_rows
    requests = per_file_figures(
        generated_file(small_rows), small_rows, generated_file(large_rows), large_rows, generated_file(REQUEST_WARM_UP)
    )
    small, large = args.memory_rows
    rss_small, rss_large = peak_rss_mb(small), peak_rss_mb(large)
    bomb = gzip_bomb()
    started = time.monotonic()
    rss_bomb = child_rss_mb(bomb)
    bomb_seconds = time.monotonic() - started

    out = io.StringIO()
    out.write(f"\ncold start (fresh interpreters, medians of {args.cold_runs})\n")
    out.write(f"  import boto3; boto3.client('sqs')  {cold['baseline_ms']:8.1f} ms\n")
    out.write(
        f"  import the ingest handler          {cold['import_ms']:8.1f} ms   "
        f"{cold['import_ms'] / cold['baseline_ms']:.1f}x\n"
    )
    out.write(
        f"  import + first-invocation setup    {cold['ready_ms']:8.1f} ms   {cold['ratio']:.1f}x   "
        f"(aws_xray_sdk imported with tracing off: {'yes' if cold['xray_imported'] else 'no'})\n"
    )
    out.write(
        f"  the same, layers without bytecode    {cold['source_ms']:8.1f} ms   {cold['source_ratio']:.1f}x   "
        "(as shipped before: Lambda's read-only layers made every cold start compile them)\n"
    )
    out.write(
        f"  libraries and clients alone        {cold['floor_ms']:8.1f} ms   {cold['floor_ratio']:.2f}x   "
        "(boto3, pydantic, Powertools and the 4 clients, none of this code: the floor)\n"
    )
    out.write(f"\ningest, {args.rows:,} rows (27 columns, 2% invalid, 3% withheld or held), CPU time\n")
    out.write(f"  bare csv.reader                    {cpu['bare_us']:8.2f} us/row\n")
    out.write(
        f"  read+validate+route+serialise+send {cpu['pipeline_us']:8.2f} us/row   {cpu['ratio']:.1f}x bare  "
        f"(real botocore client, HTTP stubbed)\n"
    )
    out.write(
        f"    of which this code               {cpu['own_us']:8.2f} us/row   "
        f"{cpu['own_us'] / cpu['bare_us']:.1f}x bare  "
        "(the same run with an SQS client that has no SDK behind it)\n"
    )
    out.write(
        f"    of which botocore's SQS client   {cpu['pipeline_us'] - cpu['own_us']:8.2f} us/row   "
        f"{(cpu['pipeline_us'] - cpu['own_us']) / cpu['bare_us']:.1f}x bare  ({cpu['sdk_us_per_request']:.0f} us a "
        f"SendMessageBatch, {cpu['sdk_us_per_record']:.1f} us a record sent)\n"
    )
    out.write(
        f"  records per SendMessageBatch       {cpu['records_per_batch']:8.2f}          "
        f"({cpu['requests']:,} requests)\n"
    )
    out.write(
        f"  resumed at row {resume['checkpoint_row']:,} (whole file {resume['full_seconds']:.2f} s CPU, "
        f"{resume['row_us']:.2f} us a row processed):\n"
        f"    replaying the rows before it          {resume['replayed_seconds']:6.2f} s CPU   "
        f"{resume['replayed_row_us']:6.2f} us a row before the checkpoint\n"
        f"    from the snapshot ({resume['snapshot_kb']:,.0f} kB gzipped) {resume['restored_seconds']:6.2f} s CPU   "
        f"{resume['skipped_row_us']:6.2f} us a row before the checkpoint (load, hash, skip)\n"
    )
    out.write(f"\nthroughput, {args.throughput_rows:,} rows, every SQS request {SQS_ROUND_TRIP_SECONDS * 1e3:.0f} ms\n")
    out.write(
        f"  {flow['records']:,} records sent in {flow['seconds']:.1f} s: {flow['records_per_second']:,.0f} "
        f"records/s; 1M rows would take {flow['million_rows_minutes']:.1f} min\n"
    )
    out.write("\nAWS requests of ingest and notify (moto; counted, not timed), each file in a warm container\n")
    out.write(
        f"  {small_rows:>6,}-row file  {requests['small']:6,} requests  {requests['per_1000_small']:6.1f} per 1,000\n"
    )
    out.write(
        f"  {large_rows:>6,}-row file  {requests['large']:6,} requests  {requests['per_1000_large']:6.1f} per 1,000\n"
    )
    at_10k = (requests["fixed"] + requests["per_record"] * 10_000) / 10
    out.write(
        f"  10,000-row file (the line through these) {at_10k:6.1f} per 1,000; fixed {requests['fixed']:.1f} a file\n"
    )
    for function, calls in sorted(requests["breakdown_small"].items()):
        breakdown = ", ".join(f"{name} {count}" for name, count in sorted(calls.items()))
        out.write(f"  {small_rows:,}-row file, {function} ({sum(calls.values())}): {breakdown}\n")
    container = requests["container"]
    once = ", ".join(f"{name} {count:+d}" for name, count in sorted(container.items())) or "nothing"
    out.write(
        f"  a cold container adds, once: {sum(container.values())} ({once}); "
        f"the {small_rows:,}-row file in a cold container: {requests['cold_small']} requests\n"
    )
    out.write("\nmemory\n")
    out.write(f"  peak RSS, {small:>9,} rows (.csv.gz) {rss_small:8.1f} MB\n")
    out.write(f"  peak RSS, {large:>9,} rows (.csv.gz) {rss_large:8.1f} MB   (+{rss_large - rss_small:.1f} MB)\n")
    out.write(
        f"  peak RSS, 2 GiB gzip bomb ({bomb.stat().st_size / 2**20:.1f} MB) {rss_bomb:6.1f} MB   "
        f"(rejected FILE_TOO_LARGE in {bomb_seconds:.1f} s; target <= 256 MB)\n"
    )

    out.write("\ngoals (issue 17), measured in this run\n")
    _goal(
        out, "cold start: import + setup / boto3+SQS client", f"{cold['ratio']:.2f}x", "<= 1.5x", cold["ratio"] <= 1.5
    )
    _goal(
        out,
        "CPU per row / bare csv.reader",
        f"{cpu['ratio']:.1f}x ({cpu['pipeline_us']:.1f} us)",
        "<= 15x",
        cpu["ratio"] <= 15,
    )
    _goal(
        out,
        "throughput, 15 ms SQS round trip",
        f"{flow['records_per_second']:,.0f} records/s",
        ">= 5,000/s",
        flow["records_per_second"] >= 5_000,
    )
    _goal(
        out,
        "1M-row file in one invocation",
        f"{flow['million_rows_minutes']:.1f} min",
        "<= 15 min",
        flow["million_rows_minutes"] * 60 <= LAMBDA_SECONDS,
    )
    _goal(
        out,
        "resume: cost of a row before the checkpoint",
        f"{resume['skipped_row_us']:.2f} us/row",
        f"<= bare csv.reader ({cpu['bare_us']:.2f} us)",
        resume["skipped_row_us"] <= cpu["bare_us"],
    )
    worst = max(requests["per_1000_small"], requests["per_1000_large"])
    _goal(out, f"requests per 1,000 records (>= {small_rows:,} rows)", f"{worst:.1f}", "<= 110", worst <= 110)
    _goal(out, "fixed requests per file (warm container)", f"{requests['fixed']:.1f}", "<= 20", requests["fixed"] <= 20)
    _goal(out, f"peak RSS, {large:,} rows", f"{rss_large:.1f} MB", "<= 256 MB", rss_large <= 256)
    print(out.getvalue())
    with gzip.open(WORK / "last-run.txt.gz", "wt") as handle:
        handle.write(out.getvalue())


if __name__ == "__main__":
    main()
