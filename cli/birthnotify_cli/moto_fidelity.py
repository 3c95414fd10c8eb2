"""AWS behaviours that moto leaves out and the pipeline's promises depend on, added to moto in this
process (its in-process mock, or a ThreadedMotoServer it runs).

- S3 event notifications carry the object's ``versionId`` (a versioned bucket) and a ``sequencer``
  unique per upload, as AWS writes them; moto's carry neither, so two uploads of one key would look
  like one redelivered event.
- SQS refuses message bodies with characters outside its allowed set (#x9 #xA #xD #x20-#xD7FF
  #xE000-#xFFFD #x10000-#x10FFFF) with InvalidMessageContents, as AWS does; moto accepts anything.
- ``SqsClock``: SQS's notion of now, which a test can move forward, so that a retry can come after the
  5-minute FIFO deduplication window (and after visibility timeouts) without waiting for it.
"""

from __future__ import annotations

import functools
import itertools
import re
import time
from collections.abc import Callable
from typing import Any

SQS_ALLOWED = re.compile("^[\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]*$")
_sequence = itertools.count(1)


def _patch(module: Any, name: str, make: Callable[[Any], Any]) -> Callable[[], None]:
    original = getattr(module, name)
    if getattr(original, "birthnotify_fidelity", False):
        return lambda: None
    replacement = make(original)
    replacement.birthnotify_fidelity = True
    setattr(module, name, replacement)
    return lambda: setattr(module, name, original)


def s3_event_versions() -> Callable[[], None]:
    """S3 events with versionId and sequencer; returns an undo."""
    import moto.s3.notifications as notifications

    def make(original: Any) -> Any:
        @functools.wraps(original)
        def with_version(event_name: str, bucket: Any, key: Any, notification_id: str) -> dict[str, Any]:
            event = original(event_name, bucket, key, notification_id)
            for record in event.get("Records", []):
                details = record["s3"]["object"]
                version_id = getattr(key, "version_id", None)
                if version_id and version_id != "null":
                    details["versionId"] = version_id
                # AWS: hexadecimal, orders the events of one key, unique per upload.
                details["sequencer"] = f"{time.time_ns():016X}{next(_sequence):08X}"
            return event

        return with_version

    return _patch(notifications, "_get_s3_event", make)


def sqs_character_rule() -> Callable[[], None]:
    """SQS refuses a body (SendMessage) or a whole batch (SendMessageBatch) holding a character outside
    its allowed set; returns an undo."""
    from moto.sqs.exceptions import SQSException
    from moto.sqs.models import SQSBackend

    class InvalidMessageContents(SQSException):
        def __init__(self) -> None:
            super().__init__(
                "InvalidMessageContents",
                "Invalid binary character in the message body. Allowed "
                "characters: #x9 | #xA | #xD | #x20 to #xD7FF | #xE000 to #xFFFD | #x10000 to #x10FFFF",
            )

    def make(original: Any) -> Any:
        @functools.wraps(original)
        def validate(self: Any, queue: Any, message_body: str, *args: Any, **kwargs: Any) -> None:
            if not SQS_ALLOWED.match(message_body):
                raise InvalidMessageContents()
            return original(self, queue, message_body, *args, **kwargs)

        return validate

    return _patch(SQSBackend, "_validate_message", make)


class SqsClock:
    """SQS's clock (sent timestamps, visibility, delays, deduplication), moved forward on demand."""

    def __init__(self) -> None:
        self.offset_seconds = 0.0
        self._undo: list[Callable[[], None]] = []

    def install(self) -> SqsClock:
        import moto.sqs.models as models

        clock = self
        # SQS's models ask for "now" with no argument; a given datetime is converted, not moved.
        self._undo.append(
            _patch(
                models,
                "unix_time",
                lambda original: lambda *when: original(*when) + (0 if when else clock.offset_seconds),
            )
        )
        self._undo.append(
            _patch(
                models,
                "unix_time_millis",
                lambda original: lambda *when: original(*when) + (0 if when else clock.offset_seconds * 1000),
            )
        )
        return self

    def advance(self, seconds: float) -> None:
        self.offset_seconds += seconds

    def uninstall(self) -> None:
        while self._undo:
            self._undo.pop()()
