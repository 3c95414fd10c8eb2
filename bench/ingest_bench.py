"""`make bench`: the ingest function's per-row cost, batching and memory, measured without AWS.

- CPU: microseconds per row for read + validate + route + serialise, next to bare ``csv.reader`` over the
  same file (target <= 5x). SQS is replaced by a stub that accepts every entry, because moto's speed says
  nothing about SQS's (it rescans a queue on every send).
- Batching: records per SendMessageBatch request through the real BatchSender (target >= 9.5).
- Requests: AWS requests per 1,000 records with the sharing ledger on (SQS, ledger chunks, destination index).
- Memory: peak RSS of a child process that ingests 10k and then 1M rows from a gzipped file
  (target flat, <= 256 MB).
"""

from __future__ import annotations

import argparse
import csv
import gc
import gzip
import io
import resource
import subprocess
import sys
import time
import zlib
from datetime import UTC, date, datetime
from pathlib import Path

from birthnotify.adapters.held import DynamoHeldWriter
from birthnotify.adapters.ledger import S3Destinations, S3Ledger
from birthnotify.adapters.sqs import BatchSender
from birthnotify.application.destinations import Destinations
from birthnotify.application.ledger import LedgerRecorder, SubjectHasher
from birthnotify.application.pipeline import FilePipeline, Source
from birthnotify.domain.postcodes import PostcodeDirectory
from birthnotify.domain.reader import FileKind, FileRejected, RowReader, scan_file
from birthnotify.domain.registry import load_registry
from birthnotify.domain.routing import Router
from birthnotify.domain.validation import RowRules, RowValidator
from birthnotify.shared.settings import DEFAULT_MAX_FILE_BYTES
from birthnotify_cli.synthetic import Mix, SyntheticRows, load_postcodes_by_district, write_file

ROOT = Path(__file__).resolve().parent.parent
REGISTRY = ROOT / "config" / "registry.toml"
WORK = ROOT / "build" / "bench"
UPLOAD_DAY = date(2026, 11, 20)
MAX_BYTES = DEFAULT_MAX_FILE_BYTES
MIX = Mix(invalid=0.02, withheld=0.02, held=0.01, amend_cancel=0.03)


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


class AcceptingSqs:
    """A stand-in SQS client that accepts every entry and counts requests."""

    def __init__(self) -> None:
        self.requests = 0
        self.entries = 0

    def send_message_batch(self, QueueUrl: str, Entries: list[dict]) -> dict:  # noqa: N803
        self.requests += 1
        self.entries += len(Entries)
        return {"Successful": [{"Id": entry["Id"]} for entry in Entries], "Failed": []}


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
    """A synthetic upload file, cached under build/bench/ (generation is slower than ingest)."""
    path = WORK / f"births-{rows}{suffix}"
    if not path.exists():
        WORK.mkdir(parents=True, exist_ok=True)
        registry = load_registry(REGISTRY)
        postcodes = load_postcodes_by_district(REGISTRY.parent / registry.postcode_directory.file)
        partial = path.with_name("partial-" + path.name)  # the name keeps the format suffixes
        write_file(partial, SyntheticRows(postcodes, UPLOAD_DAY, seed=rows, mix=MIX).rows(rows))
        partial.rename(path)
    return path


def run_pipeline(path: Path, s3: LedgerS3 | None = None) -> tuple[int, AcceptingSqs, FilePipeline, AcceptingDynamo]:
    """Ingest a local file exactly as the function does, with SQS, DynamoDB and the ledger bucket stubbed (the
    ledger written, the destination index read and merged); returns rows and counters."""
    registry = load_registry(REGISTRY)
    postcodes = PostcodeDirectory.load(REGISTRY.parent / registry.postcode_directory.file,
                                       registry.postcode_directory)
    sqs = AcceptingSqs()
    held = AcceptingDynamo()
    kind = FileKind.from_name(path.name)
    facts = scan_file(lambda: path.open("rb"), kind, MAX_BYTES)  # the first pass, as the function makes it
    with path.open("rb") as stream:
        pipeline = FilePipeline(
            source=Source("RX1", f"inbound/RX1/{path.name}", "0" * 64),
            validator=RowValidator(RowRules(UPLOAD_DAY, 366)),
            router=Router(registry, postcodes, UPLOAD_DAY),
            sender_factory=lambda on_accepted: BatchSender(sqs, on_accepted),
            queue_url=lambda gss_code: f"https://sqs/{gss_code}.fifo",
            held_writer_factory=lambda on_stored, conditional: DynamoHeldWriter(
                held, "held", on_stored, conditional=conditional, retention_days=400),
            ledger=LedgerRecorder(S3Ledger(s3 or LedgerS3(), "ledger"), trust_ods_code="RX1", file_sha256="0" * 64,
                                  day=UPLOAD_DAY, clock=lambda: datetime.now(UTC)),
            hasher=SubjectHasher(b"bench-ledger-key-of-32-bytes-or-more"),
            destinations=(destinations := Destinations.load(S3Destinations(s3 or LedgerS3(), "ledger"), "RX1")),
        )
        tally = pipeline.run(RowReader(stream, kind, facts, MAX_BYTES))
        destinations.save(S3Destinations(s3 or LedgerS3(), "ledger"), "RX1", UPLOAD_DAY, 366)
    assert tally.outcome().balanced
    return tally.rows_in, sqs, pipeline, held


def requests_per_thousand(rows: int) -> tuple[float, int, int, int]:
    """AWS requests of the per-record path (SQS batches, held store batches, ledger chunks, destination index) per
    1,000 records of a file of ``rows`` rows: (per 1,000, SQS and held store requests, ledger and index requests,
    ledger objects)."""
    s3 = LedgerS3()
    records, sqs, _, held = run_pipeline(generated_file(rows), s3)
    return ((sqs.requests + held.requests + s3.requests) / records * 1000, sqs.requests + held.requests, s3.requests,
            s3.ledger_objects)


def bare_csv_seconds(path: Path) -> float:
    started = time.process_time()
    with path.open(newline="", encoding="utf-8") as handle:
        for _ in csv.reader(handle):
            pass
    return time.process_time() - started


def best_of(runs: int, measure) -> float:
    return min(measure() for _ in range(runs))


def cpu_figures(rows: int) -> dict[str, float]:
    path = generated_file(rows)
    gc.collect()
    bare = best_of(3, lambda: bare_csv_seconds(path))

    def pipeline_seconds() -> float:
        started = time.process_time()
        run_pipeline(path)
        return time.process_time() - started

    full = best_of(3, pipeline_seconds)
    _, sqs, _, held = run_pipeline(path)
    return {"bare_us": bare / rows * 1e6, "pipeline_us": full / rows * 1e6, "ratio": full / bare,
            "records_per_batch": sqs.entries / sqs.requests, "requests": sqs.requests,
            "held_per_request": held.items / max(held.requests, 1), "held_requests": held.requests,
            "held": held.items}


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
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)  # KiB on Linux


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
    result = subprocess.run([sys.executable, "-m", "bench.ingest_bench", "--child", str(path)], cwd=ROOT,  # noqa: S603
                            check=True, capture_output=True, text=True)
    return float(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--memory-rows", type=int, nargs=2, default=(10_000, 1_000_000))
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child)
        return
    print(f"generating / reusing synthetic files in {WORK.relative_to(ROOT)} ...", flush=True)
    cpu = cpu_figures(args.rows)
    budget = {rows: requests_per_thousand(rows) for rows in (1_000, 10_000, args.rows)}
    small, large = args.memory_rows
    rss_small, rss_large = peak_rss_mb(small), peak_rss_mb(large)
    bomb = gzip_bomb()
    started = time.monotonic()
    rss_bomb = child_rss_mb(bomb)
    bomb_seconds = time.monotonic() - started
    out = io.StringIO()
    out.write(f"\ningest benchmark, {args.rows:,} rows (27 columns, 2% invalid, 3% withheld or held), CPU time\n")
    out.write(f"  bare csv.reader                    {cpu['bare_us']:8.2f} us/row\n")
    out.write(f"  read+validate+route+serialise+send {cpu['pipeline_us']:8.2f} us/row   "
              f"{cpu['ratio']:.1f}x bare  (target <= 5x)\n")
    out.write(f"  records per SendMessageBatch       {cpu['records_per_batch']:8.2f}          "
              f"({cpu['requests']:,} requests; target >= 9.5)\n")
    out.write(f"  held records per BatchWriteItem    {cpu['held_per_request']:8.2f}          "
              f"({cpu['held']:,} held in {cpu['held_requests']:,} requests; at most 25, fewer at checkpoints)\n")
    out.write("  AWS requests per 1,000 records, ledger on (SQS and held store batches + ledger chunks + destination "
              "index; the file's fixed requests are issue 17's)\n")
    for rows, (per_thousand, sqs_requests, s3_requests, ledger_objects) in budget.items():
        out.write(f"    {rows:>9,}-row file                {per_thousand:8.2f}          "
                  f"({sqs_requests:,} SQS and held store, "
                  f"{s3_requests} ledger S3: {ledger_objects} ledger objects + index read and write; "
                  f"budget <= 110)\n")
    out.write(f"  peak RSS, {small:>9,} rows (.csv.gz) {rss_small:8.1f} MB\n")
    out.write(f"  peak RSS, {large:>9,} rows (.csv.gz) {rss_large:8.1f} MB   "
              f"(+{rss_large - rss_small:.1f} MB; target flat, <= 256 MB)\n")
    out.write(f"  peak RSS, 2 GiB gzip bomb ({bomb.stat().st_size / 2**20:.1f} MB) {rss_bomb:6.1f} MB   "
              f"(rejected FILE_TOO_LARGE in {bomb_seconds:.1f} s; target <= 256 MB)\n")
    print(out.getvalue())
    with gzip.open(WORK / "last-run.txt.gz", "wt") as handle:
        handle.write(out.getvalue())


if __name__ == "__main__":
    main()
