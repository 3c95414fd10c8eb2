"""A local stand-in for the GOV.UK Notify API (POST /v2/notifications/email), for tests and the demo.

It checks the bearer token as Notify does (a JWT signed with the API key's secret, issued by its service
id, issued within 30 seconds of now), checks the request body (a valid address, a UUID template id, and,
when templates are given, every placeholder personalised), keeps every email it accepts and answers with
Notify's documented response and error shapes. It can be told to fail (500, 429 ...) to show that a
failed send is retried rather than lost, and its key can be rotated as an operator would.
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt

SERVICE_ID = "26785a09-ab16-4eb0-8407-a37497a57506"
SECRET = "3d844edf-8d35-48ac-975b-e847b4f122b0"  # noqa: S105 (a fake service's fake key)
API_KEY = f"local-fake-{SERVICE_ID}-{SECRET}"
"""An API key of the shape Notify issues: <name>-<service id>-<secret>."""
TOKEN_BOUND_SECONDS = 30
"""Notify refuses a token issued more than this far from its own clock."""

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_ERRORS = {
    400: "BadRequestError",
    403: "AuthError",
    429: "RateLimitError",
    500: "Exception",
}


def api_key_parts(api_key: str) -> tuple[str, str]:
    """(service id, secret) of an API key: its last two UUIDs, as the official clients split it."""
    return api_key[-73:-37], api_key[-36:]


@dataclass
class FakeNotify:
    host: str = "127.0.0.1"
    port: int = 0
    api_key: str = API_KEY
    """The one live key; set a new one to play a rotation (the old key is then refused)."""
    templates: dict[str, set[str]] | None = None
    """Template id -> its placeholders; None accepts any template id."""
    emails: list[dict] = field(default_factory=list)
    refused: list[tuple[int, str]] = field(default_factory=list)
    """(status, error) of every request answered with an error."""
    fail_next: int = 0
    """How many coming (authenticated, valid) requests to answer with ``fail_status``."""
    fail_status: int = 500

    def start(self) -> FakeNotify:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # quiet: the demo prints its own summary
                return None

            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                status, payload = fake._handle(self.path, self.headers.get("Authorization", ""), raw)
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer((self.host, self.port), Handler)
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    # -- the API -------------------------------------------------------------------------------------

    def _handle(self, path: str, authorization: str, raw: bytes) -> tuple[int, dict]:
        with self._lock:
            if path != "/v2/notifications/email":
                return self._error(404, "Not found", "NotFound")
            problem = self._auth_problem(authorization)
            if problem:
                return self._error(403, problem)
            try:
                body = json.loads(raw)
            except ValueError:
                return self._error(400, "Invalid JSON supplied in POST data")
            if not isinstance(body, dict):
                return self._error(400, "Invalid JSON supplied in POST data")
            problem = self._body_problem(body)
            if problem:
                return self._error(400, problem, "ValidationError" if "Not a valid" in problem else None)
            if self.fail_next:
                self.fail_next -= 1
                message = {429: "Exceeded rate limit for key type LIVE of 3000 requests per 60 seconds"}.get(
                    self.fail_status, "Internal server error"
                )
                return self._error(self.fail_status, message)
            self.emails.append(body)
            notification_id = str(uuid.uuid4())
            personalisation = body.get("personalisation") or {}
            return 201, {
                "id": notification_id,
                "reference": body.get("reference"),
                "content": {
                    "subject": personalisation.get("subject", ""),
                    "body": personalisation.get("body", ""),
                    "from_email": "birth.notifications@notifications.service.gov.uk",
                    "one_click_unsubscribe_url": None,
                },
                "uri": f"{self.base_url}/v2/notifications/{notification_id}",
                "template": {
                    "id": body["template_id"],
                    "version": 1,
                    "uri": f"{self.base_url}/v2/template/{body['template_id']}/version/1",
                },
            }

    def _auth_problem(self, authorization: str) -> str | None:
        if not authorization.startswith("Bearer "):
            return "Unauthorized: authentication token must be provided"
        token = authorization.removeprefix("Bearer ")
        service_id, secret = api_key_parts(self.api_key)
        try:
            claims = jwt.decode(
                token, secret, algorithms=["HS256"], options={"require": ["iss", "iat"], "verify_iat": False}
            )
        except jwt.InvalidSignatureError:
            return "Invalid token: API key not found"
        except jwt.PyJWTError:
            return "Invalid token: signature, api token is not valid"
        if claims["iss"] != service_id:
            return "Invalid token: service not found"
        if abs(time.time() - int(claims["iat"])) > TOKEN_BOUND_SECONDS:
            return "Error: Your system clock must be accurate to within 30 seconds"
        return None

    def _body_problem(self, body: dict) -> str | None:
        address, template_id = body.get("email_address"), body.get("template_id")
        if not isinstance(address, str) or not _EMAIL.match(address):
            return "email_address Not a valid email address"
        try:
            uuid.UUID(str(template_id))
        except ValueError:
            return "template_id is not a valid UUID"
        if self.templates is not None:
            if template_id not in self.templates:
                return "Template not found"
            personalisation = body.get("personalisation") or {}
            missing = sorted(self.templates[template_id] - set(personalisation))
            if missing:
                return f"Missing personalisation: {', '.join(missing)}"
        reference = body.get("reference")
        if reference is not None and not isinstance(reference, str):
            return "reference is not a string"
        return None

    def _error(self, status: int, message: str, error: str | None = None) -> tuple[int, dict]:
        name = error or _ERRORS.get(status, "Exception")
        self.refused.append((status, name))
        return status, {"status_code": status, "errors": [{"error": name, "message": message}]}
