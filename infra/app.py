"""The CDK app: ``cdk synth --context stage=dev`` runs this file (cdk.json "app").

One core stack and one stack per shard of authorities (infra.shards). Other code synthesizes without the
CDK CLI through ``synthesize`` (the local cloud deploys the resulting templates into moto) or
``synth_app`` (tests; it also returns the construct tree).
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

from aws_cdk import App, Stack  # noqa: E402

from infra.config import ConfigError, StageConfig  # noqa: E402
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
from infra.shards import by_shard  # noqa: E402
from infra.stack import AuthorityStack, BirthNotificationsStack  # noqa: E402

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
) -> tuple[App, BirthNotificationsStack, list[AuthorityStack]]:
    """The app (core stack, authority stacks) with every compliance check attached. Context given here
    overrides cdk.json; under the CDK CLI, ``--context`` overrides both."""
    app = App(
        context=_context({**cdk_json_context(), **(context or {})}),
        outdir=str(outdir) if outdir is not None else None,
        analytics_reporting=False,  # no AWS::CDK::Metadata resource
        stack_traces=False,
    )
    config = StageConfig.from_context(app.node.try_get_context)
    registry = config.registry()
    core = BirthNotificationsStack(app, config.stack_name, config=config, registry=registry)
    authority_stacks = [
        AuthorityStack(
            app, config.authority_stack_name(shard), config=config, shard=shard, authorities=members, core=core
        )
        for shard, members in by_shard(registry.authorities).items()
    ]
    attach_checks(app)
    return app, core, authority_stacks


@dataclass
class Synthesis:
    app: App
    stack: BirthNotificationsStack
    """The core stack."""
    authority_stacks: list[AuthorityStack]
    outdir: Path
    audit: bool = False
    _templates: dict[str, dict[str, Any]] = field(default_factory=dict, repr=False)

    @property
    def stacks(self) -> list[Stack]:
        """Every stack, the core first (deployment order)."""
        return [self.stack, *self.authority_stacks]

    def path_of(self, stack: Stack) -> Path:
        return self.outdir / stack.template_file

    def template_of(self, stack: Stack) -> dict[str, Any]:
        if stack.stack_name not in self._templates:
            self._templates[stack.stack_name] = json.loads(self.path_of(stack).read_text(encoding="utf-8"))
        return self._templates[stack.stack_name]

    @property
    def template_path(self) -> Path:
        """The core stack's template."""
        return self.path_of(self.stack)

    @property
    def template_paths(self) -> list[Path]:
        return [self.path_of(stack) for stack in self.stacks]

    @property
    def template(self) -> dict[str, Any]:
        """The core stack's template."""
        return self.template_of(self.stack)

    @property
    def templates(self) -> dict[str, dict[str, Any]]:
        """Stack name -> template, for every stack."""
        return {stack.stack_name: self.template_of(stack) for stack in self.stacks}

    def authority_stack_of(self, gss_code: str) -> AuthorityStack:
        return next(s for s in self.authority_stacks if gss_code in s.authorities.by_gss)

    def authority_template(self, gss_code: str) -> dict[str, Any]:
        """The template of the authority stack that holds ``gss_code``."""
        return self.template_of(self.authority_stack_of(gss_code))

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
        return sorted({a for stack in self.stacks for a in collect(stack)})

    def checkov_skips(self) -> list[CheckovSkip]:
        return sorted({s for template in self.templates.values() for s in checkov_skips(template)})


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
    app, core, authority_stacks = build_app(
        {**(context or {}), "stage": stage, **({AUDIT_CONTEXT: True} if audit else {})}, outdir
    )
    app.synth()
    return Synthesis(app, core, authority_stacks, outdir, audit)


def synthesize(
    stage: str = "dev", outdir: str | Path = ROOT / "cdk.out", context: dict[str, Any] | None = None
) -> list[Path]:
    """Synthesize the app into ``outdir`` (templates, asset directories, assets manifest) and return the
    templates' paths in deployment order (the core stack first; ``manifest.json`` records the
    dependencies too)."""
    return synth_app(stage, outdir, context).template_paths


def main() -> None:
    try:
        app, _, _ = build_app()
    except ConfigError as error:  # one clear message, not a traceback through the CDK CLI
        print(f"birthnotify: {error}", file=sys.stderr)
        sys.exit(1)
    app.synth()


if __name__ == "__main__":
    main()
