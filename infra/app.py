"""The CDK app: ``cdk synth --context stage=dev`` runs this file (cdk.json "app").

Other code synthesizes without the CDK CLI through ``synthesize`` (the local cloud deploys the resulting
template into moto) or ``synth_app`` (tests; it also returns the construct tree).
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# Run as a script (the CDK CLI runs ``python infra/app.py``), Python puts infra/ first on the path, where
# infra/constructs would shadow the ``constructs`` library: use the repository root instead.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "infra"]
for _path in (ROOT / "layers" / "domain" / "python", ROOT):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from aws_cdk import App  # noqa: E402

from infra.config import StageConfig  # noqa: E402
from infra.nag import (  # noqa: E402
    AUDIT_CONTEXT,
    STRICT_VALIDATION_CONTEXT,
    VALIDATION_REPORT,
    Acknowledgement,
    CheckovSkip,
    Finding,
    attach_checks,
    checkov_skips,
    collect,
    read_findings,
)
from infra.stack import BirthNotificationsStack  # noqa: E402

CDK_JSON = ROOT / "cdk.json"


def cdk_json_context() -> dict[str, Any]:
    """The context in cdk.json (feature flags and defaults): the CLI passes it to the app itself; code that
    synthesizes without the CLI gets the same from here."""
    return dict(json.loads(CDK_JSON.read_text(encoding="utf-8")).get("context", {}))


def _context(context: dict[str, Any]) -> dict[str, Any]:
    strict = dict(STRICT_VALIDATION_CONTEXT)
    if context.get(AUDIT_CONTEXT):
        strict["@aws-cdk/core:failSynthOnValidationErrors"] = False  # report findings, do not raise
    # Construct paths in each resource's Metadata, as the CDK CLI writes them: the same template either way,
    # and checkov's suppressions can be listed by path (infra.docs).
    return {"aws:cdk:enable-path-metadata": True, **context, **strict}


def build_app(
    context: dict[str, Any] | None = None, outdir: str | Path | None = None
) -> tuple[App, BirthNotificationsStack]:
    """The app with its one stack and every compliance check attached. Context given here overrides
    cdk.json; under the CDK CLI, ``--context`` overrides both."""
    app = App(
        context=_context({**cdk_json_context(), **(context or {})}),
        outdir=str(outdir) if outdir is not None else None,
        analytics_reporting=False,  # no AWS::CDK::Metadata resource
        stack_traces=False,
    )
    config = StageConfig.from_context(app.node.try_get_context)
    stack = BirthNotificationsStack(app, config.stack_name, config=config, registry=config.registry())
    attach_checks(app)
    return app, stack


@dataclass
class Synthesis:
    app: App
    stack: BirthNotificationsStack
    outdir: Path
    audit: bool = False
    _template: dict[str, Any] | None = field(default=None, repr=False)

    @property
    def template_path(self) -> Path:
        return self.outdir / self.stack.template_file

    @property
    def template(self) -> dict[str, Any]:
        if self._template is None:
            self._template = json.loads(self.template_path.read_text(encoding="utf-8"))
        return self._template

    @property
    def assets_manifest(self) -> Path:
        """``<stack>.assets.json``: each asset's directory (relative to the outdir) and its S3 object key."""
        return self.outdir / f"{self.stack.artifact_id}.assets.json"

    @property
    def validation_report(self) -> dict[str, Any]:
        return json.loads((self.outdir / VALIDATION_REPORT).read_text(encoding="utf-8"))

    def findings(self) -> list[Finding]:
        return read_findings(self.validation_report)

    def acknowledgements(self) -> list[Acknowledgement]:
        return collect(self.stack)

    def checkov_skips(self) -> list[CheckovSkip]:
        return checkov_skips(self.template)


def synth_app(
    stage: str = "dev",
    outdir: str | Path = ROOT / "cdk.out",
    context: dict[str, Any] | None = None,
    *,
    audit: bool = False,
) -> Synthesis:
    """Synthesize without the CDK CLI (no Docker, no AWS credentials). Raises if any check fails.

    With ``audit``, acknowledgements are recorded but not applied, and findings do not fail synthesis:
    ``findings()`` then lists everything the checks report, so a test can match each finding to its
    acknowledgement and each acknowledgement to a finding.
    """
    outdir = Path(outdir)
    app, stack = build_app(
        {**(context or {}), "stage": stage, **({AUDIT_CONTEXT: True} if audit else {})}, outdir
    )
    app.synth()
    return Synthesis(app, stack, outdir, audit)


def synthesize(
    stage: str = "dev", outdir: str | Path = ROOT / "cdk.out", context: dict[str, Any] | None = None
) -> Path:
    """Synthesize the app into ``outdir`` (template, asset directories, assets manifest) and return the
    template's path."""
    return synth_app(stage, outdir, context).template_path


def main() -> None:
    app, _ = build_app()
    app.synth()


if __name__ == "__main__":
    main()
