"""Make moto's SQS cost per message independent of how deep the queue already is.

moto rebuilds a queue's whole attribute dictionary several times for every message it accepts (to read
``ContentBasedDeduplication``), and that dictionary holds three approximate message counts, each a scan of
every message in the queue calling ``datetime.now`` twice a message. A queue is never drained while the
pipeline fills it (authorities consume later), so a 2,000-row file cost about 90 s, almost all of it in
those scans. This module changes how the counts are computed, never what they are:

* the three counts take one timestamp per scan and compare numbers (the same comparisons moto's
  ``Message.visible`` and ``Message.delayed`` make);
* ``camelcase_to_underscores``, a pure function of a handful of attribute names, is memoised.

The moto server runs in this process, so patching its classes here is what it serves. ``install`` checks
that the attributes it relies on exist and otherwise does nothing (and says so).
"""

from __future__ import annotations

import functools
from typing import Any

_INSTALLED = False


def install() -> str | None:
    """Apply the speed-ups once per process; returns why not if this moto version does not fit them."""
    global _INSTALLED
    if _INSTALLED:
        return None
    import moto.sqs.models as sqs_models

    def unix_time_millis() -> float:
        return sqs_models.unix_time_millis()  # looked up per call: a test may move SQS's clock

    queue, message = sqs_models.Queue, sqs_models.Message
    needed = [
        (queue, "messages"),
        (queue, "approximate_number_of_messages_delayed"),
        (queue, "approximate_number_of_messages_not_visible"),
        (message, "visible"),
        (message, "delayed"),
    ]
    missing = [f"{cls.__name__}.{name}" for cls, name in needed if not isinstance(getattr(cls, name, None), property)]
    if missing or not callable(getattr(sqs_models, "camelcase_to_underscores", None)):
        return f"moto's SQS model changed ({', '.join(missing) or 'camelcase_to_underscores'}); not sped up"

    def messages(self: Any) -> list[Any]:
        now = unix_time_millis()
        return [m for m in self._messages if now > m.visible_at and not now < m.delayed_until]

    def delayed(self: Any) -> int:
        now = unix_time_millis()
        return sum(1 for m in self._messages if now < m.delayed_until)

    def not_visible(self: Any) -> int:
        now = unix_time_millis()
        return sum(1 for m in self._messages if not now > m.visible_at)

    queue.messages = property(messages)
    queue.approximate_number_of_messages_delayed = property(delayed)
    queue.approximate_number_of_messages_not_visible = property(not_visible)
    sqs_models.camelcase_to_underscores = functools.lru_cache(maxsize=512)(sqs_models.camelcase_to_underscores)
    _INSTALLED = True
    return None
