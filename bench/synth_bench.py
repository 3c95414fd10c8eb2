"""`make bench`: a national deployment's synthesis, timed, and each stack's size against CloudFormation's limits.

The registry lists every children's services authority in England and Wales (infra.national, from
config/authorities-england-wales.csv), each with an agreement and a consumer role, and several trusts. The
synthesis is the prod stage's with every check enforced (cdk-nag's three packs, CDK's validation), as
``make synth STAGE=prod`` runs it. Target: at most 90 s on 2 cores; every stack at most 500 resources, 200
outputs and a 1 MB template.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "build" / "bench" / "national"
LIMITS = {"resources": 500, "outputs": 200, "bytes": 1_000_000}
TARGET_SECONDS = 90


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trusts", type=int, default=8)
    args = parser.parse_args(argv)
    os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from infra.app import synth_app
    from infra.docs import PRODUCTION_ADDRESSES, without_placeholders
    from infra.national import write_national_registry

    shutil.rmtree(WORK, ignore_errors=True)
    generated = write_national_registry(WORK / "generated", trusts=args.trusts)
    registry = without_placeholders(generated, WORK / "registry")  # prod refuses the generated placeholders
    started = time.monotonic()
    synthesis = synth_app("prod", WORK / "cdk.out", {**PRODUCTION_ADDRESSES, "registry_path": str(registry)})
    seconds = time.monotonic() - started
    authorities = sum(len(s.authorities.by_gss) for s in synthesis.authority_stacks)
    print(
        f"national synthesis: {authorities} authorities, {args.trusts} trusts, {len(synthesis.stacks)} stacks, "
        f"{seconds:.1f} s wall on {len(os.sched_getaffinity(0))} cores (target <= {TARGET_SECONDS} s on 2 cores; "
        "cdk-nag's three packs and CDK's validation included)"
    )
    print(f"{'stack':<48} {'resources':>9} {'outputs':>7} {'template':>10}")
    worst = True
    for stack in synthesis.stacks:
        template, size = synthesis.template_of(stack), synthesis.path_of(stack).stat().st_size
        counts = {"resources": len(template["Resources"]), "outputs": len(template.get("Outputs", {})), "bytes": size}
        within = all(counts[k] <= LIMITS[k] for k in LIMITS)
        worst = worst and within
        print(
            f"{stack.stack_name:<48} {counts['resources']:>9} {counts['outputs']:>7} {size / 1000:>8.0f} KB"
            + ("" if within else "  OVER A LIMIT")
        )
    print(
        f"limits per stack: {LIMITS['resources']} resources, {LIMITS['outputs']} outputs, 1 MB template: "
        + ("every stack within them" if worst else "EXCEEDED")
    )
    return 0 if worst and seconds <= TARGET_SECONDS else 1


if __name__ == "__main__":
    sys.exit(main())
