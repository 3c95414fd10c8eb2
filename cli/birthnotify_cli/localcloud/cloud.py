"""The whole system on one machine: an embedded moto server, the CDK app's synthesized templates deployed
into it through moto's CloudFormation (every stack, in dependency order), a local runtime in place of
Lambda's event source mappings and schedules, and NHS England's mesh-sandbox as the MESH server (its
mailbox X26ABC1 is the service's, set in the MESH secret as DevOps would set the real one).

IAM is enforced by default (``iam.py`` says who signs what): the deployer and ``client()`` are an
administrator, each function runs with its execution role, and each trust and authority acts through its
own role (``client(service, acting_as=code)``), assumed by a local IAM user standing in for the principal
the registry names. No AWS account, no Docker, no network: the server listens on 127.0.0.1 unless told
otherwise. moto keeps its state in this process, so run one local cloud per process at a time.
"""

from __future__ import annotations

import configparser
import json
import logging
import os
import platform
import secrets
import socket
import threading
import time
import urllib.request
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

from birthnotify_cli.localcloud import behaviour, iam, speedups
from birthnotify_cli.localcloud.deploy import Deployment, deploy_app, load_functions, load_mappings, load_schedules
from birthnotify_cli.localcloud.report import DeployReport
from birthnotify_cli.localcloud.runtime import LocalFunction, LocalRuntime, RunStats, ScheduleRun, SqsMapping
from birthnotify_cli.localcloud.synth import CACHE, ROOT, synthesize_cached
from birthnotify_cli.localcloud.template import ACCOUNT, APPLIED, LOCAL_RUNTIME, NOT_EMULATED, REGION
from birthnotify_cli.mesh_sandbox import MeshSandbox
from birthnotify_cli.moto_mail import ses_sent_mail

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
    ledger_bucket: str
    ledger_key_secret_id: str
    ingest_queue_url: str
    file_events_queue_url: str
    held_table: str
    """The held store (DynamoDB)."""
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


@dataclass(frozen=True)
class Principal:
    """A trust or an authority, acting through the role the stack made for it."""

    code: str
    """The trust's ODS code or the authority's GSS code."""
    kind: str
    """``trust`` or ``authority``."""
    role_arn: str
    stand_in: iam.AccessKey
    """The local IAM user standing in for the registry's principals (in the organisation's own account)."""

    @property
    def profile(self) -> str:
        """Its AWS CLI profile in the files ``LocalCloud`` writes."""
        return f"{self.kind}-{self.code}"


class LocalCloud:
    """``LocalCloud.start()`` synthesizes (cached), starts moto and deploys; ``run_until_idle()`` plays Lambda
    until every mapped queue is drained; ``stop()`` (or a ``with`` block) ends it."""

    def __init__(
        self,
        server: Any,
        endpoint_url: str,
        workdir: Path,
        deployments: list[Deployment],
        runtime: LocalRuntime,
        resources: Resources,
        template_paths: tuple[Path, ...],
        *,
        admin: iam.AccessKey,
        principals: dict[str, Principal],
        iam_enforced: bool,
        previous_enforcement: float,
        switched_on: ExitStack | None = None,
        mesh: MeshSandbox | None = None,
    ) -> None:
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
        self.admin = admin
        self.principals = principals
        """ODS or GSS code -> the trust or authority acting through its role."""
        self.iam_enforced = iam_enforced
        self._previous_enforcement = previous_enforcement
        self._switched_on = switched_on
        """Holds behaviour.active(), entered by start: the changes to moto act until stop."""
        self.mesh = mesh
        """The MESH server (mesh-sandbox on loopback): trusts' mailboxes send to the service's through it."""
        self._sessions: dict[str, boto3.session.Session] = {}
        self._email_ids_before: set[str] = {m.id for m in ses_sent_mail(ACCOUNT, REGION)}
        self._stopped = False

    # -- lifecycle -----------------------------------------------------------------------------------------

    @classmethod
    def start(
        cls,
        workdir: Path | None = None,
        progress: Progress | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        retry_delay_seconds: float | None = None,
        enforce_iam: bool = True,
        synth_cache: Path = CACHE,
    ) -> LocalCloud:
        """Synthesize the CDK app (cached by its sources), start moto on ``host:port`` (0: any free port),
        deploy every stack's template (in dependency order) and load the functions. ``workdir`` holds the
        functions' logs (``logs/``) and the AWS CLI profiles of the trusts and authorities (``aws/``); the
        synthesis and the asset zips are cached under ``synth_cache``. IAM is enforced unless ``enforce_iam``
        is False. A failed message is retried when its queue's visibility timeout ends, as with Lambda, or
        after ``retry_delay_seconds``."""
        say = progress or (lambda message: None)
        started = time.monotonic()
        workdir = Path(workdir) if workdir is not None else DEFAULT_WORKDIR
        workdir.mkdir(parents=True, exist_ok=True)
        synthesized = synthesize_cached(synth_cache, progress=say)
        say(
            f"{len(synthesized.template_paths)} templates, {synthesized.template_path.name} first "
            f"({'cached' if synthesized.cached else 'synthesized'} in {time.monotonic() - started:.1f} s)"
        )

        from moto.server import ThreadedMotoServer

        slow = speedups.install()
        changed = list(behaviour.CHANGES)
        iam_fixes = iam.install()
        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request
        if port:
            _check_free(host, port)
        mesh = MeshSandbox(log_path=workdir / "mesh-sandbox.log").start()
        server = ThreadedMotoServer(ip_address=host, port=port, verbose=False)
        try:
            server.start()
        except BaseException:
            mesh.stop()
            raise
        bound_port = server.get_host_and_port()[1]
        reachable = "127.0.0.1" if host in ("0.0.0.0", "") else f"[{host}]" if ":" in host else host  # noqa: S104
        endpoint_url = f"http://{reachable}:{bound_port}"
        previous = None
        switched_on = ExitStack()  # the changes to moto's behaviour act until stop
        switched_on.enter_context(behaviour.active())
        try:
            deploy_started = time.monotonic()
            # moto's state lives in this process, not in the server: start from nothing (an earlier local
            # cloud or a mock_aws test in this process would otherwise still be there).
            urllib.request.urlopen(  # noqa: S310
                urllib.request.Request(f"{endpoint_url}/moto-api/reset", method="POST"),  # noqa: S310
                timeout=30,
            ).close()
            # The deployer is made while anyone may do anything (no identity could make it afterwards).
            previous = iam.set_enforced(endpoint_url, False)
            admin = iam.create_admin(endpoint_url)
            if enforce_iam:
                iam.set_enforced(endpoint_url, True)
            say(
                f"moto listening on {endpoint_url} ({'IAM enforced' if enforce_iam else 'IAM not enforced'}); "
                "deploying the stacks ..."
            )
            report = DeployReport(synthesis_cached=synthesized.cached)
            clients = _client_factory(endpoint_url, admin)
            deployments = deploy_app(clients, synthesized.template_paths, synth_cache / "zips", report)
            # Functions, mappings and schedules of every stack: a mapping or rule may name a function of
            # another stack, as the templates wire them.
            functions = {k: f for d in deployments for k, f in load_functions(d, workdir / "logs").items()}
            _check_execution_roles(clients("iam"), functions)
            sqs = clients("sqs")
            runtime = LocalRuntime(
                endpoint_url,
                functions,
                [m for d in deployments for m in load_mappings(d, functions, sqs)],
                [s for d in deployments for s in load_schedules(d, functions)],
                retry_delay_seconds=retry_delay_seconds,
                sessions=lambda function: iam.lambda_session(function.role_arn, function.name),
            )
            resources = _resources(deployments, functions, runtime.mappings, sqs, endpoint_url)
            _set_mesh_secret(clients("secretsmanager"), resources, mesh, report)
            principals = _stand_in_principals(clients("iam"), deployments, resources, report)
            _report_behaviour(report, runtime, slow, changed, iam_fixes if enforce_iam else None)
            report.seconds = time.monotonic() - deploy_started
        except BaseException:
            if previous is not None:
                iam.set_enforced(endpoint_url, previous)
            server.stop()
            mesh.stop()
            switched_on.close()
            raise
        say(f"deployed {', '.join(report.stacks)} in {report.seconds:.1f} s")
        cloud = cls(
            server,
            endpoint_url,
            workdir,
            deployments,
            runtime,
            resources,
            synthesized.template_paths,
            admin=admin,
            principals=principals,
            iam_enforced=enforce_iam,
            previous_enforcement=previous,
            switched_on=switched_on,
            mesh=mesh,
        )
        cloud.write_aws_profiles()
        return cloud

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        self.runtime.stop_polling()
        try:
            # moto's settings are this process's: give back what was there (mock_aws tests run here too).
            iam.set_enforced(self.endpoint_url, self._previous_enforcement)
        finally:
            self.server.stop()
            if self.mesh is not None:
                self.mesh.stop()
            if self._switched_on is not None:
                self._switched_on.close()

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

    def session(self, acting_as: str | None = None) -> boto3.session.Session:
        """A boto3 session as the operator (the deployer, allowed everything), or, with ``acting_as`` a
        trust's ODS code or an authority's GSS code, through that organisation's role."""
        key = acting_as or ""
        if key not in self._sessions:
            if not acting_as:
                self._sessions[key] = iam.session_for_key(self.admin)
            else:
                principal = self.principals.get(acting_as)
                if principal is None:
                    raise KeyError(
                        f"no role for {acting_as!r}: roles exist for {sorted(self.principals)} (a trust "
                        "or authority gets one when the registry names its principals)"
                    )
                self._sessions[key] = iam.assume_role_session(
                    self.endpoint_url, principal.stand_in, principal.role_arn, principal.profile
                )
        return self._sessions[key]

    def client(self, service: str, acting_as: str | None = None) -> Any:
        """A boto3 client for the local cloud (eu-west-2): the operator's, or the role's of the trust or
        authority ``acting_as`` names (its ODS or GSS code)."""
        return self.session(acting_as).client(service, endpoint_url=self.endpoint_url, config=CLIENT_CONFIG)

    def run_until_idle(
        self, timeout_seconds: float = 300, on_batch: Callable[[RunStats], None] | None = None, skip_waits: bool = True
    ) -> RunStats:
        """Play the event source mappings until no mapped queue holds a message; raises TimeoutError. A wait
        for a failed message's visibility timeout (or a delay) is skipped by moving SQS's clock forward."""
        return self.runtime.run_until_idle(timeout_seconds, on_batch, skip_waits)

    def advance_sqs_clock(self, seconds: float) -> None:
        """Let ``seconds`` pass for SQS at once: visibility timeouts and delays end, FIFO deduplication ids
        are forgotten (after 300 s), as if that time had passed. Functions keep the machine's time."""
        behaviour.advance_sqs_clock(seconds)

    def fire_schedules(self, at: datetime | None = None, function: str | None = None) -> list[ScheduleRun]:
        """Deliver every scheduled rule's event (only those of ``function``, a name or logical id, if given) to
        its function now: the daily digest, the mesh function's run."""
        return self.runtime.fire_schedules(at, function)

    def invoke(self, function: str, event: Any) -> Any:
        """Invoke a function (by name or logical id) with any event, synchronously."""
        return self.runtime.invoke(function, event)

    def start_polling(self, interval_seconds: float = 0.5, on_batch: Callable[[RunStats], None] | None = None) -> None:
        self.runtime.start_polling(interval_seconds, on_batch)

    def stop_polling(self) -> None:
        self.runtime.stop_polling()

    def authority_queue_url(self, gss_code: str) -> str:
        return self.resources.authority_queues[gss_code]

    def sent_emails(self) -> list[dict[str, Any]]:
        """Every email SES accepted since this cloud started: id, from, to, subject, text and html parts
        (moto keeps them in this process)."""
        return [
            {
                "id": mail.id,
                "from": mail.sender,
                "to": mail.to,
                "subject": mail.subject,
                "text": mail.text,
                "html": mail.html,
            }
            for mail in ses_sent_mail(ACCOUNT, REGION)
            if mail.id not in self._email_ids_before
        ]

    # -- for people at a shell -------------------------------------------------------------------------------

    @property
    def aws_config_file(self) -> Path:
        return self.workdir / "aws" / "config"

    @property
    def aws_credentials_file(self) -> Path:
        return self.workdir / "aws" / "credentials"

    def write_aws_profiles(self) -> None:
        """AWS CLI (and boto3) profiles: ``localcloud-admin`` (the operator), and per trust and authority a
        profile that assumes its role as its stand-in user (``trust-RX1``, ``authority-E08000035``)."""
        config, credentials = configparser.ConfigParser(), configparser.ConfigParser()
        run = secrets.token_hex(3)
        place = {"region": REGION, "endpoint_url": self.endpoint_url}
        config[f"profile {iam.ADMIN_USER}"] = place
        credentials[iam.ADMIN_USER] = {
            "aws_access_key_id": self.admin.access_key_id,
            "aws_secret_access_key": self.admin.secret_access_key,
        }
        for principal in self.principals.values():
            stand_in = f"stand-in-{principal.profile}"
            config[f"profile {stand_in}"] = place
            credentials[stand_in] = {
                "aws_access_key_id": principal.stand_in.access_key_id,
                "aws_secret_access_key": principal.stand_in.secret_access_key,
            }
            # A session name of this run's: the AWS CLI caches assumed-role credentials (~/.aws/cli/cache) by
            # role and session name, and would offer a restarted local cloud the previous one's.
            config[f"profile {principal.profile}"] = {
                "role_arn": principal.role_arn,
                "source_profile": stand_in,
                "role_session_name": f"{principal.profile}-{run}",
                **place,
            }
        self.aws_config_file.parent.mkdir(parents=True, exist_ok=True)
        with self.aws_config_file.open("w", encoding="utf-8") as handle:
            config.write(handle)
        descriptor = os.open(self.aws_credentials_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with open(descriptor, "w", encoding="utf-8") as handle:
            credentials.write(handle)

    def usage(self, trust: str = "RX1", authority: str = "E08000035") -> str:
        """How to reach this local cloud from a shell: the profiles, an upload, its report and a queue read."""
        resources, endpoint = self.resources, self.endpoint_url
        queue = resources.authority_queues.get(authority, f"<queue of {authority}>")
        trust_profile = self.principals[trust].profile if trust in self.principals else f"trust-{trust}"
        authority_profile = (
            self.principals[authority].profile if authority in self.principals else f"authority-{authority}"
        )
        enforced = (
            "IAM is enforced: each call needs the credentials of an identity allowed to make it"
            if self.iam_enforced
            else "IAM is NOT enforced (--no-iam-enforcement): any credentials work"
        )
        roles = "\n".join(
            f"    {p.profile:<22} {p.role_arn}\n    {'':<22} assumed as {p.stand_in.user_arn.rsplit('/', 1)[-1]}: "
            f"aws_access_key_id={p.stand_in.access_key_id} aws_secret_access_key={p.stand_in.secret_access_key}"
            for p in self.principals.values()
        )
        aws = f".venv/bin/aws --endpoint-url {endpoint}"
        mesh = self.mesh.url if self.mesh else "<not running>"
        return f"""The local cloud is running at {endpoint}; {enforced}.

Trusts and councils act through their own roles, as in AWS (a local IAM user stands in for each principal
the registry names). Their AWS CLI profiles, trust-<ODS code> and authority-<GSS code>, and localcloud-admin
for the operator, are in {self.aws_config_file.parent}. From the repository (.venv/bin/aws is the AWS CLI
that make install puts there; any AWS CLI or boto3 reads the same profiles):

    export AWS_CONFIG_FILE={self.aws_config_file} AWS_SHARED_CREDENTIALS_FILE={self.aws_credentials_file}
    .venv/bin/birthnotify generate births.csv --rows 200
    {aws} --profile {trust_profile} s3 cp births.csv s3://{resources.inbound_bucket}/inbound/{trust}/births.csv
    # once this console lists the file: its reports, one per upload (the trust may read only its own)
    {aws} --profile {trust_profile} s3 cp --recursive \\
        s3://{resources.reports_bucket}/reports/{trust}/births.csv/ reports/
    # the council's queue: look without taking (--visibility-timeout 0), then consume everything
    {aws} --profile {authority_profile} sqs receive-message --visibility-timeout 0 \\
        --max-number-of-messages 10 --queue-url {queue}
    AWS_PROFILE={authority_profile} .venv/bin/birthnotify consume --wait 0 --output births-{authority}.csv \\
        --queue-url {queue}

Roles, with the key of the user that may assume each:
{roles}
    {iam.ADMIN_USER:<22} the operator, allowed everything (an IAM user):
    {"":<22} aws_access_key_id={self.admin.access_key_id} aws_secret_access_key={self.admin.secret_access_key}

MESH: the mesh-sandbox at {mesh}; the service's mailbox is X26ABC1 and the mesh function takes its
messages every minute while this runs. Trust RX2 sends from its mailbox X26ABC2 and gets its report back
there (the sandbox's mailboxes all have the password 'password'):

    .venv/bin/birthnotify mesh send births.csv --url {mesh} --from X26ABC2
    # once this console lists inbound/RX2/mesh-<message id>.csv: its report, from RX2's mailbox
    .venv/bin/birthnotify mesh receive --url {mesh} --mailbox X26ABC2 --output mesh-reports

Authority queues: {", ".join(f"{gss} {url}" for gss, url in resources.authority_queues.items())}
Held store (DynamoDB table): {resources.held_table}
Function logs: {self.workdir / "logs"}"""


def serve(
    host: str = "127.0.0.1",
    port: int = 4566,
    workdir: Path | None = None,
    progress: Progress | None = None,
    poll_interval_seconds: float = 0.5,
    until: threading.Event | None = None,
    *,
    enforce_iam: bool = True,
    retry_delay_seconds: float | None = None,
) -> int:
    """``make serve``: start the local cloud, print how to reach it, run uploads through the functions in
    the background until Ctrl-C (or ``until`` is set), naming each file processed with its counts, then
    stop. Returns the exit status."""
    say = progress or (lambda message: print(message, flush=True))
    if host not in ("127.0.0.1", "localhost", "::1"):
        say(f"warning: listening on {host}: anyone who can reach it can use the credentials printed below")
    cloud = LocalCloud.start(
        workdir, say, host=host, port=port, enforce_iam=enforce_iam, retry_delay_seconds=retry_delay_seconds
    )
    try:
        for line in cloud.report.lines():
            say(f"    {line}")
        say(cloud.usage())
        say(
            "Uploads are ingested and emails sent while this runs; each file processed is listed below. "
            "Ctrl-C stops it."
        )
        handled = [0]
        reports = _ReportWatcher(cloud)
        errors_seen = [0]

        def on_batch(stats: RunStats) -> None:
            if stats.invocations != handled[0]:
                handled[0] = stats.invocations
                say(
                    f"{time.strftime('%H:%M:%S')} {stats.invocations} invocations, {stats.messages} messages, "
                    f"{stats.failed} returned to their queue (function logs in {cloud.workdir / 'logs'})"
                )
                for line in reports.new_lines():
                    say(f"{time.strftime('%H:%M:%S')} {line}")

        cloud.start_polling(poll_interval_seconds, on_batch)
        try:
            while not (until.wait(0.5) if until else time.sleep(0.5)):
                errors = cloud.runtime.background_errors
                for error in errors[errors_seen[0] :]:
                    say(f"{time.strftime('%H:%M:%S')} the event source mappings failed: {error}")
                errors_seen[0] = len(errors)
        except KeyboardInterrupt:
            say("stopping")
    finally:
        cloud.stop()
    return 0


class _ReportWatcher:
    """Names each file the pipeline answered, with its counts, from the reports it wrote (as the operator)."""

    def __init__(self, cloud: LocalCloud) -> None:
        self._cloud = cloud
        self._s3 = cloud.client("s3")
        self._seen: set[tuple[str, str]] = set()

    def new_lines(self) -> list[str]:
        bucket = self._cloud.resources.reports_bucket
        lines = []
        for page in self._s3.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix="reports/"):
            for version in page.get("Versions", []):
                key, version_id = version["Key"], version["VersionId"]
                if not key.endswith(".json") or (key, version_id) in self._seen:
                    continue
                self._seen.add((key, version_id))
                report = json.loads(self._s3.get_object(Bucket=bucket, Key=key, VersionId=version_id)["Body"].read())
                lines.append(describe_report(report, f"s3://{bucket}/{key}"))
        return lines


def describe_report(report: dict[str, Any], where: str) -> str:
    """One line: the file, what happened to it, its counts (no personal data: reports hold none)."""
    outcome, error, first = report.get("outcome") or {}, report.get("file_error"), report.get("duplicate_of")
    if first:
        return f"{report.get('key')}: {report.get('status')} of {first.get('key')}, nothing forwarded again ({where})"
    if error:
        return f"{report.get('key')}: {report.get('status')} [{error.get('code')}] {error.get('message')} ({where})"
    return (
        f"{report.get('key')}: {report.get('status')}, {outcome.get('rows_in', 0)} rows in = "
        f"{outcome.get('forwarded', 0)} forwarded + {outcome.get('rejected', 0)} rejected + "
        f"{outcome.get('withheld', 0)} withheld + {outcome.get('held', 0)} held ({where})"
    )


# -- helpers -----------------------------------------------------------------------------------------------

CLIENT_CONFIG = Config(retries={"mode": "standard", "max_attempts": 3})


def _client_factory(endpoint_url: str, key: iam.AccessKey) -> Callable[[str], Any]:
    session = iam.session_for_key(key)
    return lambda service: session.client(service, endpoint_url=endpoint_url, config=CLIENT_CONFIG)


def _check_free(host: str, port: int) -> None:
    # ThreadedMotoServer waits for ever if its thread cannot bind: find out first.
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise OSError(
                f"cannot listen on {host}:{port} ({exc.strerror}): is a local cloud already running?"
            ) from exc


def _report_behaviour(
    report: DeployReport, runtime: LocalRuntime, slow: str | None, changed: list[str], iam_fixes: list[str] | None
) -> None:
    if iam_fixes is None:
        report.add(
            "",
            "",
            NOT_EMULATED,
            "IAM is not enforced (--no-iam-enforcement): any credentials are accepted and no policy is evaluated",
        )
    else:
        report.add(
            "",
            "",
            APPLIED,
            "IAM is enforced by moto: each call is checked against its caller's identity "
            "policies (actions and resources) and the bucket's policy; each function runs as its execution "
            "role, the event source mappings poll as it",
        )
        report.add(
            "",
            "",
            NOT_EMULATED,
            "IAM conditions are not evaluated (an Allow with a condition allows: "
            "kms:ViaService, s3:prefix, ses:FromAddress), nor queue, topic and key policies, nor the KMS "
            "permissions S3 and SQS would use on a caller's behalf",
        )
        for why in iam_fixes:
            report.add("", "", APPLIED, why)
    for why in changed:
        report.add("", "", APPLIED, why)
    if runtime.retry_delay_seconds is None:
        report.add(
            "",
            "",
            LOCAL_RUNTIME,
            "a message whose processing failed is visible again when its queue's "
            "visibility timeout ends, as with Lambda; run_until_idle moves SQS's clock forward to then instead "
            "of waiting, so a retry comes after the FIFO deduplication window as in AWS",
        )
    else:
        report.add(
            "",
            "",
            NOT_EMULATED,
            "a message whose processing failed is visible again after "
            f"{runtime.retry_delay_seconds:g} s (shortened: Lambda leaves it for its queue's visibility "
            "timeout)",
        )
    report.add(
        "",
        "",
        NOT_EMULATED,
        f"functions run in this process on Python {platform.python_version()} "
        f"{platform.machine()}, one invocation at a time (the template says python3.13 arm64; concurrency "
        "limits are not played)",
    )
    report.add(
        "",
        "",
        NOT_EMULATED,
        "alarms never fire; metrics and logs stay on this machine (function logs in <workdir>/logs)",
    )
    if slow:
        report.add("", "", NOT_EMULATED, slow)


def _set_mesh_secret(secrets: Any, resources: Resources, mesh: MeshSandbox, report: DeployReport) -> None:
    """Put the MESH secret's value, as DevOps would after deploying: here, the sandbox's service mailbox."""
    name = resources.outputs.get("MeshSecretName")
    if not name:
        return
    secrets.put_secret_value(SecretId=name, SecretString=json.dumps(mesh.credentials()))
    report.add(
        "",
        "AWS::SecretsManager::Secret",
        APPLIED,
        f"the MESH secret {name} is set to the local "
        f"mesh-sandbox ({mesh.url}, mailbox {mesh.credentials()['mailbox']}, plain HTTP on loopback), as DevOps "
        "set the real mailbox's after deploying; the sandbox checks every auth token (AUTH_MODE=full)",
    )
    report.add(
        "",
        "",
        NOT_EMULATED,
        "MESH over mutual TLS with a client certificate: the sandbox speaks plain "
        "HTTP, so the certificate half of the MESH secret is not exercised locally",
    )


def _check_execution_roles(iam_client: Any, functions: dict[str, LocalFunction]) -> None:
    """Lambda can only run a function whose role trusts lambda.amazonaws.com: refuse to start otherwise."""
    for function in functions.values():
        if not function.role_arn:
            raise RuntimeError(f"function {function.name} has no execution role in the template")
        role = iam_client.get_role(RoleName=function.role_arn.rsplit("/", 1)[-1])["Role"]
        if not iam.trusts_lambda(role["AssumeRolePolicyDocument"]):
            raise RuntimeError(
                f"the execution role of {function.name} ({function.role_arn}) does not trust "
                f"{iam.LAMBDA_SERVICE}: Lambda could not assume it"
            )


def _stand_in_principals(
    iam_client: Any, deployments: list[Deployment], resources: Resources, report: DeployReport
) -> dict[str, Principal]:
    """A local IAM user in place of the registry's principals of each trust's and authority's role."""
    logical_of = {physical: logical for d in deployments for logical, physical in d.physical.items()}
    principals = {}
    for kind, roles in (("trust", resources.trust_upload_roles), ("authority", resources.authority_consumer_roles)):
        for code, role_arn in roles.items():
            key = iam.stand_in_for(iam_client, role_arn, f"stand-in-{kind}-{code}")
            principals[code] = Principal(code, kind, role_arn, key)
            report.add(
                logical_of.get(role_arn.rsplit("/", 1)[-1], ""),
                "AWS::IAM::Role",
                APPLIED,
                "its trust policy names a local IAM user (stand-in-<trust|authority>-<code>) instead of the "
                "registry's principals, which are in the organisations' own AWS accounts",
            )
    return principals


def _resources(
    deployments: list[Deployment],
    functions: dict[str, LocalFunction],
    mappings: list[SqsMapping],
    sqs: Any,
    endpoint_url: str,
) -> Resources:
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
        authority_queues = {
            a.gss_code: by_name[name]
            for a in registry.authorities
            if (name := authority_queue_name(prefix, a.gss_code)) in by_name
        }
        authority_stacks = {gss: stack_of[url.rsplit("/", 1)[-1]] for gss, url in authority_queues.items()}
        trust_roles = {
            t.ods_code: value
            for t in registry.trusts
            for key, value in outputs.items()
            if key.startswith(f"Trusts{t.ods_code}UploadRoleArn")
        }
        consumer_roles = {
            a.gss_code: value
            for a in registry.authorities
            for key, value in outputs.items()
            if key.startswith(f"Authorities{a.gss_code}ConsumerRoleArn")
        }
    ingest = next((m.queue_url for m in mappings if Env.INBOUND_BUCKET in m.function.environment), "")
    return Resources(
        stack_name=deployments[0].stack_name,
        inbound_bucket=env.get(Env.INBOUND_BUCKET, ""),
        reports_bucket=env.get(Env.REPORTS_BUCKET, ""),
        state_table=env.get(Env.STATE_TABLE, ""),
        ledger_bucket=env.get(Env.LEDGER_BUCKET, ""),
        ledger_key_secret_id=env.get(Env.LEDGER_KEY_SECRET_ID, ""),
        ingest_queue_url=local(ingest),
        file_events_queue_url=local(env.get(Env.FILE_EVENTS_QUEUE_URL, "")),
        held_table=env.get(Env.HELD_TABLE, ""),
        authority_queue_prefix=prefix,
        authority_queues=authority_queues,
        authority_stacks=authority_stacks,
        dead_letter_queues=dead_letters,
        trust_upload_roles=trust_roles,
        authority_consumer_roles=consumer_roles,
        functions={f.name: logical for logical, f in functions.items()},
        registry_path=registry_path,
        outputs=dict(outputs),
    )
