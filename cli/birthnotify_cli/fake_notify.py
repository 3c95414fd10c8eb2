"""A local stand-in for the GOV.UK Notify API (POST /v2/notifications/email), for tests and the demo.

It checks the bearer token as Notify does (a JWT signed with the API key's secret, issued by its service
id), keeps every email it accepts, and answers with Notify's documented response. It can also be told to
fail, to show that a failed send is retried rather than lost.
"""

from __future__ import annotations

import json
import threading
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt

SERVICE_ID = "26785a09-ab16-4eb0-8407-a37497a57506"
SECRET = "3d844edf-8d35-48ac-975b-e847b4f122b0"  # noqa: S105 (a fake service's fake key)
API_KEY = f"local-fake-{SERVICE_ID}-{SECRET}"
"""An API key of the shape Notify issues: <name>-<service id>-<secret>."""


@dataclass
class FakeNotify:
    host: str = "127.0.0.1"
    port: int = 0
    emails: list[dict] = field(default_factory=list)
    fail_next: int = 0
    """How many coming requests to answer with Notify's 500 error."""

    def start(self) -> FakeNotify:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # quiet: the demo prints its own summary
                return None

            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                if self.path != "/v2/notifications/email":
                    return self._answer(404, {"errors": [{"error": "NotFound", "message": self.path}]})
                token = self.headers.get("Authorization", "").removeprefix("Bearer ")
                try:
                    claims = jwt.decode(token, SECRET, algorithms=["HS256"])
                    assert claims["iss"] == SERVICE_ID
                except Exception:  # noqa: BLE001
                    return self._answer(403, {"errors": [{"error": "AuthError", "message": "Invalid token"}]})
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if fake.fail_next:
                    fake.fail_next -= 1
                    return self._answer(500, {"errors": [{"error": "Exception", "message": "Internal error"}]})
                fake.emails.append(body)
                personalisation = body.get("personalisation", {})
                self._answer(201, {
                    "id": str(uuid.uuid4()), "reference": body.get("reference"),
                    "content": {"subject": personalisation.get("subject"), "body": personalisation.get("body"),
                                "from_email": "birth.notifications@notifications.service.gov.uk"},
                    "uri": "", "template": {"id": body["template_id"], "version": 1, "uri": ""},
                })

            def _answer(self, status: int, payload: dict) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._server = ThreadingHTTPServer((self.host, self.port), Handler)
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
