"""The local cloud: moto on loopback with the synthesized CDK template deployed into it, and a local
runtime playing Lambda's event source mappings and schedules.

    with LocalCloud.start() as cloud:
        cloud.client("s3").upload_file("births.csv", cloud.resources.inbound_bucket, "inbound/RX1/births.csv")
        stats = cloud.run_until_idle()
        cloud.sent_emails()

``serve(host, port)`` leaves one running for the AWS CLI and boto3 until Ctrl-C.
"""

from birthnotify_cli.localcloud.cloud import LocalCloud, Resources, serve
from birthnotify_cli.localcloud.report import DeployItem, DeployReport
from birthnotify_cli.localcloud.runtime import LocalFunction, LocalRuntime, RunStats, ScheduleRun, SqsMapping

__all__ = [
    "DeployItem",
    "DeployReport",
    "LocalCloud",
    "LocalFunction",
    "LocalRuntime",
    "Resources",
    "RunStats",
    "ScheduleRun",
    "SqsMapping",
    "serve",
]
