"""How ingest's passes open an upload from the one GetObject that gave its size (application.ingest.UploadPasses)."""

from __future__ import annotations

import io
from datetime import UTC, datetime

import pytest
from birthnotify.application import ingest
from birthnotify.application.ingest import UploadPasses
from birthnotify.application.ports import FetchedUpload

UPLOADED = datetime(2026, 11, 20, 9, 30, tzinfo=UTC)


class Store:
    """The requests after the first: each opening of the upload again gives its bytes afresh."""

    def __init__(self, content: bytes) -> None:
        self.content = content
        self.reopened = 0

    def open(self) -> io.BytesIO:
        self.reopened += 1
        return io.BytesIO(self.content)


def fetched(content: bytes, size: int | None = None) -> tuple[FetchedUpload, io.BytesIO]:
    body = io.BytesIO(content)
    return FetchedUpload(size=len(content) if size is None else size, last_modified=UPLOADED, body=body), body


def test_a_small_upload_is_read_once_from_the_first_response_and_every_pass_reads_it_from_memory():
    content = b"header\r\nrow\r\n"
    upload, body = fetched(content)
    store = Store(content)
    passes = UploadPasses(upload, store.open)
    passes.first_pass_over()
    assert body.tell() == len(content)  # read whole at once
    assert [passes().read() for _ in range(3)] == [content] * 3
    assert store.reopened == 0


def test_a_large_upload_streams_the_first_response_to_the_first_pass_and_reopens_for_later_ones(monkeypatch):
    monkeypatch.setattr(ingest, "IN_MEMORY_BYTES", 4)
    content = b"header\r\nrow\r\n"
    upload, body = fetched(content)
    store = Store(content)
    passes = UploadPasses(upload, store.open)
    assert body.tell() == 0  # nothing read until a pass reads it
    first = passes()
    assert first is body and store.reopened == 0
    passes.first_pass_over()
    assert passes().read() == content and passes().read() == content
    assert store.reopened == 2


def test_the_first_response_is_never_handed_to_a_pass_after_the_first(monkeypatch):
    # A first pass that ended before opening the upload (a resumed file's snapshot read first, a failure):
    # the first response is closed with it, so later passes open their own.
    monkeypatch.setattr(ingest, "IN_MEMORY_BYTES", 4)
    content = b"header\r\nrow\r\n"
    upload, body = fetched(content)
    store = Store(content)
    passes = UploadPasses(upload, store.open)
    passes.first_pass_over()
    body.close()
    assert passes().read() == content and store.reopened == 1


@pytest.mark.parametrize("extra", [1, 100])
def test_bytes_beyond_the_size_the_store_gave_are_not_trusted_to_memory(monkeypatch, extra):
    monkeypatch.setattr(ingest, "IN_MEMORY_BYTES", 8)
    content = b"x" * (8 + extra)
    upload, _ = fetched(content, size=4)  # a store whose size and body disagree
    store = Store(content)
    passes = UploadPasses(upload, store.open)
    passes.first_pass_over()
    assert passes().read() == content and store.reopened == 1


def test_a_body_shorter_than_the_size_its_response_gave_is_not_trusted_to_memory():
    # Size and bytes come from one response: fewer bytes than its size means the body was cut short (an HTTP
    # stack that does not enforce Content-Length returns what it got). Every pass then streams its own request,
    # whose end is checked against its length, rather than the file's last rows going unread and unreported.
    content = b"header\r\nrow 1\r\nrow 2\r\n"
    upload, _ = fetched(content[:15], size=len(content))
    store = Store(content)
    passes = UploadPasses(upload, store.open)
    passes.first_pass_over()
    assert passes().read() == content and store.reopened == 1
