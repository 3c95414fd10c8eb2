"""Where moto behaves unlike AWS in ways this system depends on, made to behave like AWS while a local
cloud runs; and SQS's clock, which the local cloud moves forward instead of waiting.

From ``birthnotify_cli.moto_fidelity`` (shared with the integration tests):

* S3 event notifications carry the object's ``versionId`` (a versioned bucket) and a ``sequencer``, so a
  re-upload to the same key is a new upload, as the ingest function sees it in AWS;
* SQS refuses a message body with a character outside its allowed set, as AWS does;
* SQS's clock (visibility timeouts, delays, deduplication, retention) is the machine's time plus the seconds
  the local cloud skipped (``advance_sqs_clock``): a retry that Lambda would make after a queue's visibility
  timeout of an hour happens at once, an hour later in SQS's eyes, after the deduplication window, as in
  AWS. Nothing else moves: functions and moto's other services keep the machine's time.

Added here: a FIFO queue remembers a deduplication id for five minutes from its first send, also after the
message was received and deleted, per message group when the queue's DeduplicationScope says so (moto
compares only with messages still in the queue).

The moto server runs in this process, so patching its classes here is what it serves. The changes act only
while a local cloud is running (``active``), so other tests in the same process meet moto as it is.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from birthnotify_cli import moto_fidelity

DEDUPLICATION_SECONDS = 300
"""SQS FIFO queues drop a message whose deduplication id was sent in the last five minutes."""
CHANGES = (
    "S3 event notifications carry the object's versionId and a sequencer (moto's carry neither)",
    "SQS refuses a message body with a character outside its allowed set, as AWS does (moto accepts any)",
    "SQS keeps time by a clock the local runtime moves forward instead of waiting for a visibility timeout or "
    "a delay to end (functions keep the machine's time)",
    f"FIFO queues remember a deduplication id for {DEDUPLICATION_SECONDS} s from its first send, also after the "
    "message was deleted, per message group where DeduplicationScope is messageGroup (moto compares only with "
    "messages still queued)",
)

_LOCK = threading.Lock()
_ACTIVE: list[Any] = []
"""The SQS clock of the local cloud that switched the changes on (at most one per process)."""
_DEDUPLICATION_INSTALLED = [False]


@contextmanager
def active() -> Iterator[None]:
    """Switch the changes on for the duration (one local cloud per process at a time)."""
    with _LOCK:
        if _ACTIVE:
            raise RuntimeError("a local cloud is already running in this process (moto's state is the process's)")
        _install_fifo_deduplication()
        undo = [moto_fidelity.s3_event_versions(), moto_fidelity.sqs_character_rule()]
        clock = moto_fidelity.SqsClock().install()
        _ACTIVE.append(clock)
    try:
        yield
    finally:
        with _LOCK:
            _ACTIVE.clear()
            clock.uninstall()
            for step in reversed(undo):
                step()


def advance_sqs_clock(seconds: float) -> None:
    """Make ``seconds`` pass for SQS at once: messages become visible, delays end and deduplication ids
    are forgotten as if that time had passed."""
    if seconds < 0:
        raise ValueError("SQS's clock only moves forward")
    if not _ACTIVE:
        raise RuntimeError("no local cloud is running: SQS keeps the machine's time")
    _ACTIVE[0].advance(seconds)


def skipped_seconds() -> float:
    """How far SQS's clock is ahead of the machine's (0 when no local cloud runs)."""
    return _ACTIVE[0].offset_seconds if _ACTIVE else 0.0


def _install_fifo_deduplication() -> None:
    if _DEDUPLICATION_INSTALLED[0]:
        return
    import moto.sqs.models as sqs_models

    original = sqs_models.Queue.add_message

    def add_message(self: Any, message: Any) -> None:
        deduplication_id = message.deduplication_id
        if not (_ACTIVE and self.fifo_queue and deduplication_id):
            return original(self, message)
        now = sqs_models.unix_time()  # SQS's clock
        remembered: dict[tuple[str, str], float] = self.__dict__.setdefault("_localcloud_deduplication", {})
        while remembered:  # oldest first (insertion order): forget what is older than the window
            oldest, first_sent = next(iter(remembered.items()))
            if now - first_sent < DEDUPLICATION_SECONDS:
                break
            del remembered[oldest]
        group = (message.group_id or "") if getattr(self, "deduplication_scope", "queue") == "messageGroup" else ""
        if (group, deduplication_id) in remembered:
            return None  # accepted and dropped, as SQS does
        remembered[(group, deduplication_id)] = now
        message.deduplication_id = None  # moto's own check (only against messages still queued) is replaced
        try:
            return original(self, message)
        finally:
            message.deduplication_id = deduplication_id

    sqs_models.Queue.add_message = add_message
    _DEDUPLICATION_INSTALLED[0] = True


def seconds_until_visible(queue_names: list[str], account: str, region: str) -> float | None:
    """Of the messages in these queues, how long (in SQS's time) until the first that is in flight or
    delayed can be received; None if none is waiting (0 if one can be received now)."""
    import moto.sqs.models as sqs_models

    backend = sqs_models.sqs_backends[account][region]
    now = sqs_models.unix_time_millis()
    waits = []
    for name in queue_names:
        queue = backend.queues.get(name)
        if queue is None:
            continue
        for message in list(queue._messages):
            waits.append(max(message.visible_at, message.delayed_until, now) - now)
    return min(waits) / 1000.0 if waits else None
