"""Generated parts of docs/infrastructure.md: the context keys, the compliance acknowledgements and the
checkov suppressions.

    python -m infra.docs --write   # regenerate after changing an acknowledgement or a context key
    python -m infra.docs --check   # exit 1 if the document is stale (tests/infra does the same)

The acknowledgements and suppressions come from a synthesis that creates every optional resource (the
GOV.UK Notify secret, the held-queue reviewer role), so the lists cover every stage and transport.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import sys
import tempfile
from pathlib import Path

from infra.config import CONTEXT_KEYS, DEFAULT_REGISTRY, ROOT, StageConfig
from infra.nag import Acknowledgement, CheckovSkip

DOC = ROOT / "docs" / "infrastructure.md"
DOCUMENTED_STAGE = "prod"
PRODUCTION_ADDRESSES = {
    # prod refuses placeholders: invented values in no example domain, for syntheses that are never deployed
    "email_sender": "birth-notifications@nhs.net",
    "consumer_guide_url": "https://digital.nhs.uk/birth-notifications/consumer-guide",
}
DOCUMENTED_CONTEXT = {
    "email_transport": "notify",
    "notify_template_id": "f33517ff-2a88-4f6e-b855-c550268ce08a",
    "held_reviewer_principals": ["arn:aws:iam::210987654321:role/birth-notifications-reviewer"],
    "ledger_auditor_principals": ["arn:aws:iam::210987654321:role/birth-notifications-ig-lead"],
    **PRODUCTION_ADDRESSES,
}
"""The synthesis whose acknowledgements the document lists: every optional resource present."""


def without_placeholders(registry: Path, directory: Path) -> Path:
    """A copy of ``registry`` in ``directory`` with its placeholders replaced by invented values that are not
    placeholders (prod refuses them), its postcode directory and councils data beside it. For syntheses never
    deployed."""
    directory.mkdir(parents=True, exist_ok=True)
    text = registry.read_text(encoding="utf-8")
    text = re.sub(r"([@.])example\.", r"\1", text)  # maternity-data@northgate.example.nhs.uk -> ...@northgate.nhs.uk
    text = re.sub(r"::(\d)\1{11}:", lambda m: f"::2109876543{m.group(1)}0:", text)  # 111111111111 -> 210987654310
    text = re.sub(r'"X26ABC(\d)"', r'"RX\1OT001"', text)  # a mesh-sandbox mailbox -> an invented one
    (directory / "registry.toml").write_text(text, encoding="utf-8")
    for data in ("postcodes.csv", "authorities-england-wales.csv"):  # the files it names, beside it
        (directory / data).write_bytes((registry.parent / data).read_bytes())
    return directory / "registry.toml"


def documented_context(directory: Path) -> dict:
    """DOCUMENTED_CONTEXT with a registry the documented (prod) stage accepts, written under ``directory``."""
    return {**DOCUMENTED_CONTEXT, "registry_path": str(without_placeholders(DEFAULT_REGISTRY, directory))}


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_acknowledgements(acknowledgements: list[Acknowledgement], stage: str) -> str:
    stage_names = re.compile(rf"birthnotify-{re.escape(stage)}-")
    lines = [
        f"{len(acknowledgements)} acknowledgements (for a stage `<stage>`, with `email_transport=notify` "
        "and a held-queue reviewer role).",
        "",
        "| Rule | Where (construct path) | Why it is acceptable |",
        "|---|---|---|",
    ]
    for ack in acknowledgements:
        rule = stage_names.sub("birthnotify-<stage>-", ack.rule)
        lines.append(f"| `{_cell(rule)}` | `{_cell(ack.path)}` | {_cell(ack.reason)} |")
    return "\n".join(lines)


def render_checkov_skips(skips: list[CheckovSkip]) -> str:
    lines = [
        f"{len(skips)} suppressions, each in its resource's template Metadata (`checkov: skip`).",
        "",
        "| Check | Where (construct path) | Why it is acceptable |",
        "|---|---|---|",
    ]
    for skip in skips:
        lines.append(f"| `{skip.check}` | `{_cell(skip.path)}` | {_cell(skip.reason)} |")
    return "\n".join(lines)


def render_context() -> str:
    defaults = {
        field.name: field.default
        for field in dataclasses.fields(StageConfig)
        if field.default is not dataclasses.MISSING
    }
    defaults["stage"] = "dev"
    lines = ["| Key | Default | What it does |", "|---|---|---|"]
    for key, description in CONTEXT_KEYS.items():
        default = defaults[key]
        if isinstance(default, Path):
            default = default.relative_to(ROOT).as_posix()
        elif isinstance(default, tuple):
            default = ",".join(default) or "(none)"
        lines.append(f"| `{key}` | `{default}` | {_cell(description)} |")
    return "\n".join(lines)


def replace_section(text: str, name: str, body: str) -> str:
    start, end = f"<!-- generated:{name} -->", f"<!-- /generated:{name} -->"
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.DOTALL)
    if not pattern.search(text):
        raise ValueError(f"{DOC} has no {start} ... {end} section")
    return pattern.sub(lambda _: f"{start}\n{body}\n{end}", text)


def render(
    text: str, acknowledgements: list[Acknowledgement], skips: list[CheckovSkip], stage: str = DOCUMENTED_STAGE
) -> str:
    text = replace_section(text, "context", render_context())
    text = replace_section(text, "checkov", render_checkov_skips(skips))
    return replace_section(text, "acknowledgements", render_acknowledgements(acknowledgements, stage))


def documented(outdir: Path) -> tuple[list[Acknowledgement], list[CheckovSkip]]:
    from infra.app import synth_app

    with tempfile.TemporaryDirectory() as registry:
        synthesis = synth_app(DOCUMENTED_STAGE, outdir, documented_context(Path(registry)), audit=True)
        return synthesis.acknowledgements(), synthesis.checkov_skips()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="rewrite docs/infrastructure.md")
    parser.add_argument("--check", action="store_true", help="exit 1 if docs/infrastructure.md is stale")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as outdir:
        acknowledgements, skips = documented(Path(outdir))
    current = DOC.read_text(encoding="utf-8")
    updated = render(current, acknowledgements, skips)
    if args.write and updated != current:
        DOC.write_text(updated, encoding="utf-8")
        print(f"updated {DOC.relative_to(ROOT)}")
    elif args.check and updated != current:
        print(f"{DOC.relative_to(ROOT)} is stale: run python -m infra.docs --write", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
