"""The whole system on one machine: an embedded moto server, the CDK app's synthesized templates deployed
into it through moto's CloudFormation (every stack, in dependency order), and a local runtime in place of
Lambda's event source mappings.

No AWS account, no Docker, no network: the server listens on 127.0.0.1 unless told otherwise. moto keeps
its state in this process, so run one local cloud per process at a time.
"""

from __future__ import annotations

import email
import email.policy
import logging
import platform
import socket
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

from birthnotify_cli.localcloud import speedups
from birthnotify_cli.localcloud.deploy import Deployment, deploy_app, load_functions, load_mappings, load_schedules
from birthnotify_cli.localcloud.report import DeployReport
from birthnotify_cli.localcloud.runtime import LocalFunction, LocalRuntime, RunStats, ScheduleRun, SqsMapping
from birthnotify_cli.localcloud.synth import CACHE, ROOT, synthesize_cached
from birthnotify_cli.localcloud.template import ACCOUNT, NOT_EMULATED, REGION

Progress = Callable[[str], None]
DEFAULT_WORKDIR = ROOT / "build" / "localcloud"


@dataclass(frozen=True)
class Resources:
    """Physical ids of what users and tests touch, read from the deployed stack (not from naming rules)."""

    stack_name: str
    """The core stack (the functions, buckets and shared queues)."""
    inbound_bucket: str
    reports_bucket: str
    state_table: str
    ingest_queue_url: str
    file_events_queue_url: str
    held_queue_url: str
    authority_queue_prefix: str
    authority_queues: dict[str, str]
    """GSS code -> the authority's FIFO queue URL, for every authority in the deployed registry."""
    authority_stacks: dict[str, str]
    """GSS code -> the stack that holds the authority's queue."""
    dead_letter_queues: dict[str, str]
    """Queue URL -> its dead-letter queue URL, for every queue with a redrive policy."""
    trust_upload_roles: dict[str, str]
    """ODS code -> ARN of the role the trust assumes to upload."""
    authority_consumer_roles: dict[str, str]
    """GSS code -> ARN of the role the authority's consumer assumes."""
    functions: dict[str, str]
    """Function name -> logical id."""
    registry_path: str
    """The registry the functions read (the config layer's copy)."""
    outputs: dict[str, str] = field(default_factory=dict)


class LocalCloud:
    """``LocalCloud.start()`` synthesizes (cached), starts moto and deploys; ``run_until_idle()`` plays Lambda
    until every mapped queue is drained; ``stop()`` (or a ``with`` block) ends it."""

    def __init__(self, server: Any, endpoint_url: str, workdir: Path, deployments: list[Deployment],
                 runtime: LocalRuntime, resources: Resources, template_paths: tuple[Path, ...]) -> None:
        self.server = server
        self.endpoint_url = endpoint_url
        self.workdir = workdir
        self.deployments = deployments
        """Every stack, in the order deployed (the core stack first)."""
        self.deployment = deployments[0]
        self.runtime = runtime
        self.resources = resources
        self.template_paths = template_paths
        self.template_path = template_paths[0]
        self._email_ids_before: set[str] = {m.id for m in _ses_messages()}
        self._stopped = False

    # -- lifecycle -----------------------------------------------------------------------------------------

    @classmethod
    def start(cls, workdir: Path | None = None, progress: Progress | None = None, *, host: str = "127.0.0.1",
              port: int = 0, retry_delay_seconds: int = 1, synth_cache: Path = CACHE) -> LocalCloud:
        """Synthesize the CDK app (cached by its sources), start moto on ``host:port`` (0: any free port),
        deploy every stack's template (in dependency order) and load the functions. ``workdir`` holds the
        functions' logs (``logs/``); the synthesis and the asset zips are cached under ``synth_cache``. A
        failed message is retried after ``retry_delay_seconds`` (Lambda: the queue's visibility timeout)."""
        say = progress or (lambda message: None)
        started = time.monotonic()
        workdir = Path(workdir) if workdir is not None else DEFAULT_WORKDIR
        workdir.mkdir(parents=True, exist_ok=True)
        synthesized = synthesize_cached(synth_cache, progress=say)
        say(f"{len(synthesized.template_paths)} templates, {synthesized.template_path.name} first "
            f"({'cached' if synthesized.cached else 'synthesized'} in {time.monotonic() - started:.1f} s)")

        from moto.server import ThreadedMotoServer

        slow = speedups.install()
        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request
        if port:
            _check_free(host, port)
        server = ThreadedMotoServer(ip_address=host, port=port, verbose=False)
        server.start()
        bound_port = server.get_host_and_port()[1]
        reachable = "127.0.0.1" if host in ("0.0.0.0", "") else f"[{host}]" if ":" in host else host  # noqa: S104
        endpoint_url = f"http://{reachable}:{bound_port}"
        try:
            deploy_started = time.monotonic()
            # moto's state lives in this process, not in the server: start from nothing (an earlier local
            # cloud or a mock_aws test in this process would otherwise still be there).
            urllib.request.urlopen(urllib.request.Request(f"{endpoint_url}/moto-api/reset", method="POST"),  # noqa: S310
                                   timeout=30).close()
            say(f"moto listening on {endpoint_url}; deploying the stacks ...")
            report = DeployReport(synthesis_cached=synthesized.cached)
            clients = _client_factory(endpoint_url)
            deployments = deploy_app(clients, synthesized.template_paths, synth_cache / "zips", report)
            # Functions, mappings and schedules of every stack: a mapping or rule may name a function of
            # another stack, as the templates wire them.
            functions = {k: f for d in deployments for k, f in load_functions(d, workdir / "logs").items()}
            sqs = clients("sqs")
            runtime = LocalRuntime(endpoint_url, functions,
                                   [m for d in deployments for m in load_mappings(d, functions, sqs)],
                                   [s for d in deployments for s in load_schedules(d, functions)],
                                   retry_delay_seconds=retry_delay_seconds)
            _report_behaviour(report, runtime, slow)
            resources = _resources(deployments, functions, runtime.mappings, sqs, endpoint_url)
            report.seconds = time.monotonic() - deploy_started
        except BaseException:
            server.stop()
            raise
        say(f"deployed {', '.join(report.stacks)} in {report.seconds:.1f} s")
        return cls(server, endpoint_url, workdir, deployments, runtime, resources, synthesized.template_paths)

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        self.runtime.stop_polling()
        self.server.stop()

    def __enter__(self) -> LocalCloud:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- using it ------------------------------------------------------------------------------------------

    @property
    def report(self) -> DeployReport:
        return self.deployment.report

    @property
    def outputs(self) -> dict[str, str]:
        """Every stack's outputs (their keys are unique across the app)."""
        return {k: v for d in self.deployments for k, v in d.outputs.items()}

    @property
    def physical(self) -> dict[str, str]:
        """Logical id -> physical id, for every stack's resources."""
        return {k: v for d in self.deployments for k, v in d.physical.items()}

    @property
    def functions(self) -> dict[str, LocalFunction]:
        return self.runtime.functions

    def client(self, service: str) -> Any:
        """A boto3 client for the local cloud (fake credentials, eu-west-2)."""
        return _client_factory(self.endpoint_url)(service)

    def run_until_idle(self, timeout_seconds: float = 300,
                       on_batch: Callable[[RunStats], None] | None = None) -> RunStats:
        """Play the event source mappings until no mapped queue holds a message; raises TimeoutError."""
        return self.runtime.run_until_idle(timeout_seconds, on_batch)

    def fire_schedules(self, at: datetime | None = None) -> list[ScheduleRun]:
        """Deliver every scheduled rule's event to its function now (the daily digest)."""
        return self.runtime.fire_schedules(at)

    def invoke(self, function: str, event: Any) -> Any:
        """Invoke a function (by name or logical id) with any event, synchronously."""
        return self.runtime.invoke(function, event)

    def start_polling(self, interval_seconds: float = 0.5,
                      on_batch: Callable[[RunStats], None] | None = None) -> None:
        self.runtime.start_polling(interval_seconds, on_batch)

    def stop_polling(self) -> None:
        self.runtime.stop_polling()

    def authority_queue_url(self, gss_code: str) -> str:
        return self.resources.authority_queues[gss_code]

    def sent_emails(self) -> list[dict[str, Any]]:
        """Every email SES accepted since this cloud started: id, from, to, subject, text and html parts
        (moto keeps them in this process)."""
        sent = []
        for message in _ses_messages():
            if message.id in self._email_ids_before:
                continue
            raw = getattr(message, "raw_data", None)
            if raw is None:
                destinations = message.destinations
                sent.append({"id": message.id, "from": message.source,
                             "to": [*destinations.get("ToAddresses", []), *destinations.get("CcAddresses", [])],
                             "subject": message.subject, "text": message.body, "html": ""})
                continue
            parsed = email.message_from_string(raw, policy=email.policy.default)
            text, html = parsed.get_body(("plain",)), parsed.get_body(("html",))
            sent.append({"id": message.id, "from": str(parsed.get("From", message.source)),
                         "to": list(dict.fromkeys(message.destinations)), "subject": str(parsed.get("Subject", "")),
                         "text": text.get_content() if text else "", "html": html.get_content() if html else ""})
        return sent

    def usage(self, trust: str = "RX1", authority: str = "E08000035") -> str:
        """How to reach this local cloud from a shell: credentials, and an upload, report and queue read."""
        resources, endpoint = self.resources, self.endpoint_url
        queue = resources.authority_queues.get(authority, f"<queue of {authority}>")
        return f"""The local cloud is running at {endpoint} (fake credentials: any key id and secret work).

    export AWS_ACCESS_KEY_ID=local AWS_SECRET_ACCESS_KEY=local AWS_DEFAULT_REGION={REGION}
    .venv/bin/birthnotify generate births.csv --rows 200
    aws --endpoint-url {endpoint} s3 cp births.csv s3://{resources.inbound_bucket}/inbound/{trust}/births.csv
    aws --endpoint-url {endpoint} s3 cp --recursive s3://{resources.reports_bucket}/reports/{trust}/births.csv/ \\
        reports/
    aws --endpoint-url {endpoint} sqs receive-message --max-number-of-messages 10 \\
        --queue-url {queue}
    .venv/bin/birthnotify consume --endpoint-url {endpoint} --queue-url {queue} --output births-{authority}.csv

Authority queues: {', '.join(f'{gss} {url}' for gss, url in resources.authority_queues.items())}
Held queue: {resources.held_queue_url}
Function logs: {self.workdir / 'logs'}"""


def serve(host: str = "127.0.0.1", port: int = 4566, workdir: Path | None = None, progress: Progress | None = None,
          poll_interval_seconds: float = 0.5, until: threading.Event | None = None) -> int:
    """``make serve``: start the local cloud, print how to reach it, run uploads through the functions in
    the background until Ctrl-C (or ``until`` is set), then stop. Returns the exit status."""
    say = progress or (lambda message: print(message, flush=True))
    if host not in ("127.0.0.1", "localhost", "::1"):
        say(f"warning: listening on {host}: anyone who can reach it can read and write everything (no auth)")
    cloud = LocalCloud.start(workdir, say, host=host, port=port)
    try:
        for line in cloud.report.lines():
            say(f"    {line}")
        say(cloud.usage())
        say("Uploads are ingested and emails sent while this runs. Ctrl-C stops it.")
        handled = [0]

        def on_batch(stats: RunStats) -> None:
            if stats.invocations != handled[0]:
                handled[0] = stats.invocations
                say(f"{time.strftime('%H:%M:%S')} {stats.invocations} invocations, {stats.messages} messages, "
                    f"{stats.failed} returned to their queue")

        cloud.start_polling(poll_interval_seconds, on_batch)
        try:
            while not (until.wait(0.5) if until else time.sleep(0.5)):
                pass
        except KeyboardInterrupt:
            say("stopping")
    finally:
        cloud.stop()
    return 0


# -- helpers -----------------------------------------------------------------------------------------------

def _client_factory(endpoint_url: str) -> Callable[[str], Any]:
    session = boto3.session.Session(aws_access_key_id="local", aws_secret_access_key="local",  # noqa: S106
                                    region_name=REGION)
    config = Config(retries={"mode": "standard", "max_attempts": 3})
    return lambda service: session.client(service, endpoint_url=endpoint_url, config=config)


def _ses_messages() -> list[Any]:
    from moto.ses.models import ses_backends

    return list(ses_backends[ACCOUNT][REGION].sent_messages)


def _check_free(host: str, port: int) -> None:
    # ThreadedMotoServer waits for ever if its thread cannot bind: find out first.
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise OSError(f"cannot listen on {host}:{port} ({exc.strerror}): is a local cloud already running?") \
                from exc


def _report_behaviour(report: DeployReport, runtime: LocalRuntime, slow: str | None) -> None:
    for why in (
        "IAM and KMS policies are stored, not enforced (moto's default; tests may switch IAM enforcement on)",
        f"functions run in this process on Python {platform.python_version()} {platform.machine()}, one "
        "invocation at a time (the template says python3.13 arm64; concurrency limits are not played)",
        f"a message whose processing failed is visible again after {runtime.retry_delay_seconds} s, not "
        "after the queue's visibility timeout",
        "alarms never fire; metrics and logs stay on this machine (function logs in <workdir>/logs)",
    ):
        report.add("", "", NOT_EMULATED, why)
    if slow:
        report.add("", "", NOT_EMULATED, slow)


def _resources(deployments: list[Deployment], functions: dict[str, LocalFunction], mappings: list[SqsMapping],
               sqs: Any, endpoint_url: str) -> Resources:
    import json

    from birthnotify.domain.registry import load_registry
    from birthnotify.shared.names import authority_queue_name
    from birthnotify.shared.settings import Env

    env: dict[str, str] = {}
    for function in functions.values():  # the stack sets these from the same settings module
        env.update({k: v for k, v in function.environment.items() if v})
    outputs = {k: v for d in deployments for k, v in d.outputs.items()}

    def local(queue_url: str) -> str:
        """moto's physical id is the queue's AWS URL; the local one is what get_queue_url answers here."""
        return f"{endpoint_url}/{ACCOUNT}/{queue_url.rsplit('/', 1)[-1]}" if queue_url else ""

    prefix = env.get(Env.AUTHORITY_QUEUE_PREFIX, outputs.get("AuthorityQueuePrefix", ""))
    stack_of: dict[str, str] = {}  # queue name -> its stack
    by_name: dict[str, str] = {}
    for deployment in deployments:
        for logical, url in deployment.physical.items():
            if deployment.template["Resources"].get(logical, {}).get("Type") == "AWS::SQS::Queue":
                by_name[url.rsplit("/", 1)[-1]] = local(url)
                stack_of[url.rsplit("/", 1)[-1]] = deployment.stack_name
    dead_letters = {}
    for url in by_name.values():
        attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["RedrivePolicy"]).get("Attributes", {})
        if "RedrivePolicy" in attributes:
            target = json.loads(attributes["RedrivePolicy"])["deadLetterTargetArn"].rsplit(":", 1)[-1]
            dead_letters[url] = by_name.get(target, "")
    registry_path = env.get(Env.REGISTRY_PATH, "")
    authority_queues, authority_stacks, trust_roles, consumer_roles = {}, {}, {}, {}
    if registry_path and Path(registry_path).exists():
        registry = load_registry(registry_path)
        authority_queues = {a.gss_code: by_name[name] for a in registry.authorities
                            if (name := authority_queue_name(prefix, a.gss_code)) in by_name}
        authority_stacks = {gss: stack_of[url.rsplit("/", 1)[-1]] for gss, url in authority_queues.items()}
        trust_roles = {t.ods_code: value for t in registry.trusts for key, value in outputs.items()
                       if key.startswith(f"Trusts{t.ods_code}UploadRoleArn")}
        consumer_roles = {a.gss_code: value for a in registry.authorities for key, value in outputs.items()
                          if key.startswith(f"Authorities{a.gss_code}ConsumerRoleArn")}
    ingest = next((m.queue_url for m in mappings if Env.INBOUND_BUCKET in m.function.environment), "")
    return Resources(
        stack_name=deployments[0].stack_name, inbound_bucket=env.get(Env.INBOUND_BUCKET, ""),
        reports_bucket=env.get(Env.REPORTS_BUCKET, ""), state_table=env.get(Env.STATE_TABLE, ""),
        ingest_queue_url=local(ingest), file_events_queue_url=local(env.get(Env.FILE_EVENTS_QUEUE_URL, "")),
        held_queue_url=local(env.get(Env.HELD_QUEUE_URL, "")), authority_queue_prefix=prefix,
        authority_queues=authority_queues, authority_stacks=authority_stacks, dead_letter_queues=dead_letters,
        trust_upload_roles=trust_roles,
        authority_consumer_roles=consumer_roles, functions={f.name: logical for logical, f in functions.items()},
        registry_path=registry_path, outputs=dict(outputs))
