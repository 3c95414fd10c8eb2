"""The local cloud: moto on loopback with the synthesized CDK template deployed into it."""

from birthnotify_cli.localcloud.cloud import DeployReport, LocalCloud, RunStats

__all__ = ["DeployReport", "LocalCloud", "RunStats"]
