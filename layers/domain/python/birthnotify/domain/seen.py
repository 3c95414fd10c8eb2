"""Exact membership of many short strings (notification ids) in little memory."""

from __future__ import annotations

from array import array
from itertools import accumulate
from zlib import crc32


class SeenIds:
    """Exact membership of the ids seen in a file, in about 12 bytes an id.

    A Python set of a million strings costs ~60 MB; here each id is appended to one of 65,536 byte
    buckets (chosen by the CRC-32 of its bytes, the same in every process, so a resumed run copies the
    buckets back) and looked up with a substring search, which is as fast and ~5x smaller.
    """

    BUCKETS = 1 << 16

    def __init__(self) -> None:
        self._buckets: list[bytearray | None] = [None] * self.BUCKETS

    @staticmethod
    def _key(value: str) -> bytes:
        # surrogatepass: an id is looked up before it is validated, and may hold anything.
        return b"\n" + value.encode("utf-8", "surrogatepass") + b"\n"

    def add(self, value: str) -> bool:
        """Record the id; True when it was already there."""
        key = self._key(value)
        index = crc32(key) & (self.BUCKETS - 1)
        bucket = self._buckets[index]
        if bucket is None:
            self._buckets[index] = bytearray(key)
            return False
        if key in bucket:
            return True
        bucket += key[1:]
        return False

    def __contains__(self, value: str) -> bool:
        key = self._key(value)
        bucket = self._buckets[crc32(key) & (self.BUCKETS - 1)]
        return bucket is not None and key in bucket

    def dump(self) -> bytes:
        """The ids as they are kept (each bucket's length, then the buckets): what ``load`` takes back."""
        lengths = array("I", [len(bucket) if bucket is not None else 0 for bucket in self._buckets])
        return lengths.tobytes() + b"".join(bucket for bucket in self._buckets if bucket is not None)

    @classmethod
    def load(cls, dumped: bytes) -> SeenIds:
        """The ids of ``dump`` (in another process too: buckets are chosen by CRC-32, not by Python's hash, so
        they are copied back, not rebuilt id by id)."""
        seen = cls()
        lengths = array("I")
        lengths.frombytes(dumped[: lengths.itemsize * cls.BUCKETS])
        if len(lengths) != cls.BUCKETS:
            raise ValueError("not a dump of SeenIds")
        body = memoryview(dumped)[lengths.itemsize * cls.BUCKETS :]
        ends = list(accumulate(lengths))
        if (ends[-1] if ends else 0) != len(body):
            raise ValueError("not a dump of SeenIds")
        seen._buckets = [
            bytearray(body[end - length : end]) if length else None for end, length in zip(ends, lengths, strict=True)
        ]
        return seen
