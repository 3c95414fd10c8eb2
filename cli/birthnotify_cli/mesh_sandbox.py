"""NHS England's mesh-sandbox, a real MESH server, run as a child process on loopback: for the tests, the
local cloud (``make demo``, ``make serve``) and anyone trying the MESH route by hand.

It is ``uvicorn mesh_sandbox.api:app`` with the sandbox's canned mailboxes (X26ABC1, X26ABC2, X26ABC3, each
with the password ``password``), messages in memory (or in files, to survive a restart), and
authentication checked in full: every request carries an auth token made with the shared key, as with
MESH itself. It listens on a socket this process binds first (uvicorn --fd), so the port is never raced for.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

MAILBOXES = ("X26ABC1", "X26ABC2", "X26ABC3")
PASSWORD = "password"  # noqa: S105 (the sandbox's canned mailboxes all have this password)
SHARED_KEY = "birth-notifications-local"
"""The local sandbox's shared key (MESH gives each environment its own; the sandbox takes any)."""
SERVICE_MAILBOX = "X26ABC1"
"""The service's own mailbox in local runs: trusts send to it, reports come from it."""
START_GUARD_SECONDS = 120
"""Only to give up on a sandbox that never answers; it is usually up in a few seconds."""


class MeshSandbox:
    """``MeshSandbox().start()`` ... ``stop()``, or a ``with`` block."""

    def __init__(self, *, port: int = 0, store_dir: Path | None = None, log_path: Path | None = None) -> None:
        self.port = port
        self.store_dir = store_dir
        """Keep messages in files here (STORE_MODE=file), so a stopped sandbox restarted on the same port and
        directory still holds them; in memory when None."""
        self.log_path = log_path
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> MeshSandbox:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self.port = listener.getsockname()[1]
        environment = {
            **os.environ,
            "STORE_MODE": "file" if self.store_dir else "memory",
            "AUTH_MODE": "full",
            "SHARED_KEY": SHARED_KEY,
            "ENV": "local",
        }
        if self.store_dir:
            self.store_dir.mkdir(parents=True, exist_ok=True)
            environment["FILE_STORE_DIR"] = str(self.store_dir)
        log = self.log_path.open("ab") if self.log_path else subprocess.DEVNULL
        try:
            self._process = subprocess.Popen(  # noqa: S603 (this interpreter, fixed arguments)
                [
                    sys.executable,
                    "-m",
                    "uvicorn",
                    "mesh_sandbox.api:app",
                    "--fd",
                    str(listener.fileno()),
                    "--log-level",
                    "warning",
                    "--no-access-log",
                ],
                env=environment,
                stdout=log,
                stderr=log,
                pass_fds=(listener.fileno(),),
            )
        finally:
            listener.close()  # the child has its own copy
            if self.log_path:
                log.close()  # type: ignore[union-attr]
        self._wait_until_up()
        return self

    def _wait_until_up(self) -> None:
        deadline = time.monotonic() + START_GUARD_SECONDS
        while True:
            assert self._process is not None
            if self._process.poll() is not None:
                raise RuntimeError(
                    f"mesh-sandbox exited ({self._process.returncode}) before it answered"
                    + (f"; see {self.log_path}" if self.log_path else "")
                )
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=5):  # noqa: S310 (loopback)
                    return
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(
                        f"mesh-sandbox did not answer on {self.url} within {START_GUARD_SECONDS} s"
                    ) from None
                time.sleep(0.2)

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(30)

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def __enter__(self) -> MeshSandbox:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def reset(self) -> None:
        """Empty every mailbox (the sandbox's test-only admin endpoint)."""
        request = urllib.request.Request(f"{self.url}/messageexchange/admin/reset", method="DELETE")  # noqa: S310
        urllib.request.urlopen(request, timeout=30).close()  # noqa: S310 (loopback)

    def credentials(self, mailbox: str = SERVICE_MAILBOX) -> dict[str, str]:
        """The MESH secret's value for a mailbox of this sandbox (plain HTTP on loopback, no certificates)."""
        return {"url": self.url, "mailbox": mailbox, "password": PASSWORD, "shared_key": SHARED_KEY}

    def client(self, mailbox: str) -> AbstractContextManager[Any]:
        """A mesh-client session as ``mailbox`` (a trust's, to send a file or read its reports), handshaken."""
        return sandbox_client(self.url, mailbox)


@contextmanager
def sandbox_client(url: str, mailbox: str) -> Iterator[Any]:
    """A mesh-client session with a mailbox of the sandbox at ``url``, handshaken."""
    from mesh_client import MeshClient

    with MeshClient(url, mailbox, PASSWORD, shared_key=SHARED_KEY.encode(), max_retries=0, timeout=60) as client:
        client.handshake()
        yield client
