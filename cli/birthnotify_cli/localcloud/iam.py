"""IAM in the local cloud: moto enforces the deployed identity policies, every caller signs as an identity
of its own, and moto's evaluation is brought closer to AWS's where this stack relies on it.

Who signs what, as in an account:

* the deployer (``localcloud-admin``, an IAM user allowed everything) deploys the stack and is what
  ``LocalCloud.client`` uses, as an operator would;
* each function runs with credentials of its execution role, assumed through moto's STS as Lambda's
  service principal assumes it (after checking that the role trusts ``lambda.amazonaws.com``); the
  event source mappings poll with the same credentials, as Lambda's do;
* each trust and authority acts through the role the stack made for it. The registry names principals in
  the trust's or council's own AWS account; locally an IAM user stands in for each, and the role's trust
  policy names that user instead.

moto checks a request's signature and the caller's identity policies (inline and managed), with their
Action and Resource elements, and S3 bucket policies. It does not evaluate conditions (an Allow with a
condition allows; a Deny with one denies everything), nor queue, topic or key policies, nor the KMS calls
S3 and SQS make on a caller's behalf. ``install`` fixes what would otherwise refuse calls AWS allows.
"""

from __future__ import annotations

import functools
import json
import re
import threading
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import botocore.session
from botocore.config import Config
from botocore.credentials import RefreshableCredentials

from birthnotify_cli.localcloud.template import ACCOUNT, REGION

ADMIN_USER = "localcloud-admin"
LAMBDA_SERVICE = "lambda.amazonaws.com"
SESSION_SECONDS = 3600
"""Lifetime of assumed-role credentials; sessions refresh them before they expire."""
IAM_ACTION_OF = {
    "sqs:SendMessageBatch": "sqs:SendMessage",
    "sqs:DeleteMessageBatch": "sqs:DeleteMessage",
    "sqs:ChangeMessageVisibilityBatch": "sqs:ChangeMessageVisibility",
}
"""SQS's batch APIs are authorised by the permission of the single call (there is no IAM action for them);
moto asks for an action named after the API."""
CLIENT_CONFIG = Config(retries={"mode": "standard", "max_attempts": 3})
ALLOW_EVERYTHING = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}

_INSTALLED: list[str] = []
_INSTALL_LOCK = threading.Lock()


@dataclass(frozen=True)
class AccessKey:
    """An IAM user's long-term access key."""

    user_arn: str
    access_key_id: str
    secret_access_key: str


# -- moto's evaluation, as AWS evaluates what this stack does -------------------------------------------


def install() -> list[str]:
    """Correct moto's IAM evaluation where it would refuse what AWS allows (once per process); returns
    what was changed, for the deploy report."""
    with _INSTALL_LOCK:
        if not _INSTALLED:
            _INSTALLED.extend(_install())
        return list(_INSTALLED)


def _install() -> list[str]:
    from moto.core.exceptions import JsonRESTError
    from moto.core.responses import ActionAuthenticatorMixin
    from moto.dynamodb.responses import DynamoHandler
    from moto.iam.access_control import IAMPolicyStatement, IAMRequestBase
    from moto.secretsmanager.responses import SecretsManagerResponse
    from moto.ses.responses import EmailResponse
    from moto.sesv2.responses import SESV2Response
    from moto.sqs.responses import SQSResponse
    from werkzeug.exceptions import HTTPException

    original_init = IAMRequestBase.__init__

    @functools.wraps(original_init)
    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        original_init(self, *args, **kwargs)
        self._action = IAM_ACTION_OF.get(self._action, self._action)

    IAMRequestBase.__init__ = init

    original_authorize = ActionAuthenticatorMixin._authenticate_and_authorize_normal_action

    def authorize(self: Any, resource: Any = "*") -> None:
        # A request that touches several resources (an email: its identity and its configuration set)
        # must be allowed on each.
        try:
            for one in resource if isinstance(resource, list | tuple) else [resource]:
                original_authorize(self, one)
        except JsonRESTError:
            raise
        except HTTPException as refused:
            # A JSON-protocol client (SQS, DynamoDB) cannot read moto's XML error: it would see "403" where
            # AWS answers AccessDenied.
            if "json" in (self.headers.get("Content-Type") or "") and hasattr(refused, "to_json"):
                raise refused.to_json() from None
            raise

    ActionAuthenticatorMixin._authenticate_and_authorize_normal_action = authorize

    def table_arns(self: Any) -> Any:
        body = self.body if isinstance(self.body, dict) else {}
        tables = [body["TableName"]] if body.get("TableName") else list(body.get("RequestItems") or {})
        for item in body.get("TransactItems") or []:  # TransactWriteItems, TransactGetItems
            tables += [operation["TableName"] for operation in item.values() if "TableName" in operation]
        prefix = f"arn:aws:dynamodb:{self.region}:{self.current_account}:table/"
        if body.get("TableName") and body.get("IndexName"):  # a Query or Scan of an index: AWS authorises the index
            return [f"{prefix}{body['TableName']}/index/{body['IndexName']}"]
        return [prefix + table for table in dict.fromkeys(tables)] or "*"

    DynamoHandler._determine_resource = table_arns

    queue_arn = SQSResponse._determine_resource

    def named_queue_arn(self: Any) -> str:
        if self._get_action() == "GetQueueUrl":  # names the queue by QueueName, not QueueUrl
            queue = self.sqs_backend.queues.get(self._get_param("QueueName") or "")
            return queue.queue_arn if queue is not None else "*"
        return queue_arn(self)

    SQSResponse._determine_resource = named_queue_arn

    def sending_resources(self: Any, sender: str, configuration_set: str, template: str = "") -> Any:
        """What AWS authorises a send against: the sender's identity, the configuration set and the stored
        template, those the request names."""
        arn = f"arn:aws:ses:{self.region}:{self.current_account}"
        resources = []
        if "@" in sender:
            address = sender.rsplit("<", 1)[-1].rstrip(">").strip()
            resources.append(f"{arn}:identity/{_identity_of(self, address)}")
        if configuration_set:
            resources.append(f"{arn}:configuration-set/{configuration_set}")
        if template:
            resources.append(f"{arn}:template/{template}")
        return resources or "*"

    def email_resources(self: Any) -> Any:
        if self._get_action() not in ("SendEmail", "SendBulkEmail"):
            return "*"
        try:
            params = json.loads(self.body or "{}")
        except ValueError:
            return "*"
        return sending_resources(self, params.get("FromEmailAddress") or "", params.get("ConfigurationSetName") or "")

    SESV2Response._determine_resource = email_resources

    def bulk_email_resources(self: Any) -> Any:
        # SES v1 SendBulkTemplatedEmail (the notifier's sends).
        if self._get_action() != "SendBulkTemplatedEmail":
            return "*"
        return sending_resources(
            self,
            str(self._get_param("Source") or ""),
            str(self._get_param("ConfigurationSetName") or ""),
            str(self._get_param("Template") or ""),
        )

    EmailResponse._determine_resource = bulk_email_resources

    def secret_arn(self: Any) -> str:
        try:
            secret_id = str(json.loads(self.body or "{}").get("SecretId") or "")
        except (ValueError, AttributeError):
            return "*"
        if not secret_id:
            return "*"
        from moto.secretsmanager.models import secretsmanager_backends

        secret = secretsmanager_backends[self.current_account][self.region].secrets.get(secret_id)
        return secret.arn if secret is not None else secret_id

    SecretsManagerResponse._determine_resource = secret_arn

    original_check_principal = IAMPolicyStatement._check_principal

    def check_principal(self: Any, principal: str) -> bool:
        expected = self._statement.get("Principal")
        if isinstance(expected, dict) and "AWS" not in expected:
            return False  # a service principal (lambda.amazonaws.com) is never an IAM user or role session
        return original_check_principal(self, principal)

    IAMPolicyStatement._check_principal = check_principal

    def wildcard_match(pattern: str, value: str) -> re.Match[str] | None:
        # IAM's wildcards: * any run of characters, ? exactly one; everything else literal.
        regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
        return re.fullmatch(regex, value, re.DOTALL)

    IAMPolicyStatement._match = staticmethod(wildcard_match)
    return [
        "SQS batch calls are authorised by the single call's permission (sqs:SendMessage for "
        "SendMessageBatch, sqs:DeleteMessage for DeleteMessageBatch), as in AWS; moto asks for the API's name",
        "DynamoDB calls are authorised against the ARN of each table they name (batch and transaction calls too; "
        "a Query or Scan of an index against the index's), "
        'SQS GetQueueUrl against the queue\'s (moto checks them against "*", which no resource-scoped policy '
        "allows)",
        "SESv2 SendEmail is authorised against the sender's identity and the configuration set, SES "
        'SendBulkTemplatedEmail against those and the template (moto: "*")',
        'Secrets Manager calls are authorised against the secret\'s ARN, named by name or ARN (moto: "*")',
        "AssumeRole of a role that trusts only a service principal is refused with AccessDenied (moto raised "
        "an internal error)",
        "IAM's wildcards in actions and resources match as in AWS (* any characters, ? one; moto read them as "
        "a regular expression, so a ? answered 500 and a . matched any character)",
        "a refusal reaches a JSON-protocol client (SQS, DynamoDB) as a JSON error with its code (AccessDenied, "
        'InvalidClientTokenId), as AWS sends it (moto sent XML, which the client reads as "403")',
    ]


def _identity_of(response: Any, address: str) -> str:
    """The verified identity SES would authorise a sender against: the address, else its domain."""
    try:
        from moto.ses.models import ses_backends

        identities = set(ses_backends[response.current_account][response.region].email_identities)
    except (KeyError, AttributeError):
        identities = set()
    domain = address.rsplit("@", 1)[-1]
    return address if address in identities or domain not in identities else domain


def set_enforced(endpoint_url: str, enforced: bool | float) -> float:
    """Switch moto's IAM enforcement on (every request authenticated and authorised) or off; returns the
    previous setting, to give back here later (moto's INITIAL_NO_AUTH_ACTION_COUNT: the number of requests
    let through unchecked, 0 to enforce, infinity never to)."""
    value = enforced if not isinstance(enforced, bool) else 0.0 if enforced else float("inf")
    # Not a form: moto reads the raw body, which a form content type would have consumed.
    request = urllib.request.Request(  # noqa: S310
        f"{endpoint_url}/moto-api/reset-auth",
        data=str(value).encode(),
        method="POST",
        headers={"Content-Type": "text/plain"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 (the local moto server)
        return float(json.loads(response.read())["PREVIOUS_INITIAL_NO_AUTH_ACTION_COUNT"])


# -- identities ----------------------------------------------------------------------------------------


def create_user(iam: Any, name: str, policy: dict[str, Any]) -> AccessKey:
    """An IAM user with one inline policy and an access key."""
    user = iam.create_user(UserName=name)["User"]
    iam.put_user_policy(UserName=name, PolicyName=f"{name}-policy", PolicyDocument=json.dumps(policy))
    key = iam.create_access_key(UserName=name)["AccessKey"]
    return AccessKey(user["Arn"], key["AccessKeyId"], key["SecretAccessKey"])


def create_admin(endpoint_url: str) -> AccessKey:
    """The deployer, made before enforcement is switched on (no identity could make it afterwards): any
    key is accepted until then."""
    iam = boto3.client(
        "iam",
        endpoint_url=endpoint_url,
        region_name=REGION,
        aws_access_key_id="bootstrap",
        aws_secret_access_key="bootstrap",  # noqa: S106
        config=CLIENT_CONFIG,
    )
    return create_user(iam, ADMIN_USER, ALLOW_EVERYTHING)


def session_for_key(key: AccessKey) -> boto3.session.Session:
    return boto3.session.Session(
        aws_access_key_id=key.access_key_id, aws_secret_access_key=key.secret_access_key, region_name=REGION
    )


def stand_in_for(iam: Any, role_arn: str, user_name: str) -> AccessKey:
    """Make a local IAM user the only principal the role trusts (in place of the registry's principals in
    other accounts), allowed nothing but assuming that role."""
    key = create_user(
        iam,
        user_name,
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole", "Resource": role_arn}]},
    )
    role_name = role_arn.rsplit("/", 1)[-1]
    document = iam.get_role(RoleName=role_name)["Role"]["AssumeRolePolicyDocument"]
    for statement in document["Statement"]:
        if statement.get("Effect") == "Allow" and "AWS" in statement.get("Principal", {}):
            statement["Principal"] = {"AWS": key.user_arn}
    iam.update_assume_role_policy(RoleName=role_name, PolicyDocument=json.dumps(document))
    return key


def trusts_lambda(document: dict[str, Any]) -> bool:
    """Whether a role's trust policy lets Lambda's service principal assume it."""
    for statement in document.get("Statement", []):
        actions = statement.get("Action", [])
        services = (
            statement.get("Principal", {}).get("Service", []) if isinstance(statement.get("Principal"), dict) else []
        )
        if (
            statement.get("Effect") == "Allow"
            and "sts:AssumeRole" in ([actions] if isinstance(actions, str) else actions)
            and LAMBDA_SERVICE in ([services] if isinstance(services, str) else services)
        ):
            return True
    return False


# -- assumed roles, refreshed before they expire ---------------------------------------------------------

Fetch = Callable[[], tuple[str, str, str, datetime]]
"""Returns access key id, secret, session token and expiry."""


def refreshing_session(fetch: Fetch) -> boto3.session.Session:
    """A boto3 session whose credentials come from ``fetch`` and are fetched again before they expire
    (botocore refreshes them in every client made from the session, also clients cached by a handler)."""

    def metadata() -> dict[str, str]:
        access_key, secret, token, expiry = fetch()
        return {
            "access_key": access_key,
            "secret_key": secret,
            "token": token,
            "expiry_time": expiry.astimezone(UTC).isoformat(),
        }

    credentials = RefreshableCredentials.create_from_metadata(
        metadata(), refresh_using=metadata, method="sts-assume-role"
    )
    core = botocore.session.get_session()
    core._credentials = credentials  # the documented way to give a session refreshable credentials
    return boto3.session.Session(botocore_session=core, region_name=REGION)


def assume_role_session(
    endpoint_url: str,
    source: AccessKey,
    role_arn: str,
    session_name: str,
) -> boto3.session.Session:
    """Act through ``role_arn`` as ``source`` would: sts:AssumeRole through the API (moto checks the role's
    trust policy and the source's permission to assume it)."""
    sts = boto3.client(
        "sts",
        endpoint_url=endpoint_url,
        region_name=REGION,
        config=CLIENT_CONFIG,
        aws_access_key_id=source.access_key_id,
        aws_secret_access_key=source.secret_access_key,
    )

    def fetch() -> tuple[str, str, str, datetime]:
        credentials = sts.assume_role(RoleArn=role_arn, RoleSessionName=session_name, DurationSeconds=SESSION_SECONDS)[
            "Credentials"
        ]
        return (
            credentials["AccessKeyId"],
            credentials["SecretAccessKey"],
            credentials["SessionToken"],
            credentials["Expiration"],
        )

    return refreshing_session(fetch)


def lambda_session(role_arn: str, function_name: str) -> boto3.session.Session:
    """The credentials Lambda gives a function: its execution role, assumed by Lambda's service principal
    (moto's STS, in this process: no IAM identity can sign as a service), session named after the function."""
    from moto.sts.models import sts_backends

    def fetch() -> tuple[str, str, str, datetime]:
        role = sts_backends[ACCOUNT]["aws"].assume_role(
            region_name=REGION,
            role_session_name=function_name,
            role_arn=role_arn,
            policy="",
            duration=SESSION_SECONDS,
            external_id="",
        )
        return (
            role.access_key_id,
            role.secret_access_key,
            role.session_token,
            datetime.now(UTC) + timedelta(seconds=SESSION_SECONDS),
        )

    return refreshing_session(fetch)
