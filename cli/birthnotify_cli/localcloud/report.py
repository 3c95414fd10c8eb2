"""What a local deployment did, resource by resource: created by moto's CloudFormation, applied by hand,
played by the local runtime, skipped, or created without some of its behaviour. Nothing is hidden."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from birthnotify_cli.localcloud.template import APPLIED, LOCAL_RUNTIME, NOT_EMULATED, SKIPPED


@dataclass(frozen=True)
class DeployItem:
    """One resource (or, with an empty logical id, one behaviour of the whole local cloud)."""

    logical_id: str
    resource_type: str
    action: str
    """``applied``, ``local-runtime``, ``skipped`` or ``not-emulated``."""
    why: str


@dataclass
class DeployReport:
    stack_name: str = ""
    """The first stack deployed (the core stack)."""
    stacks: list[str] = field(default_factory=list)
    """Every stack deployed, in order."""
    created: int = 0
    """Resources moto's CloudFormation created from the adapted templates."""
    items: list[DeployItem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    """Changes made to the template itself (a rule removed, references to skipped resources replaced)."""
    seconds: float = 0.0
    """Time from starting moto to a deployed stack with everything applied."""
    synthesis_cached: bool = False

    def add(self, logical_id: str, resource_type: str, action: str, why: str) -> None:
        self.items.append(DeployItem(logical_id, resource_type, action, why))

    def of(self, action: str) -> list[DeployItem]:
        return [item for item in self.items if item.action == action]

    @property
    def applied(self) -> list[DeployItem]:
        return self.of(APPLIED)

    @property
    def local_runtime(self) -> list[DeployItem]:
        return self.of(LOCAL_RUNTIME)

    @property
    def skipped(self) -> list[DeployItem]:
        return self.of(SKIPPED)

    @property
    def not_emulated(self) -> list[DeployItem]:
        return self.of(NOT_EMULATED)

    def lines(self) -> list[str]:
        """A readable summary: one line per action, type and reason, naming the resources when few."""
        templates = (
            "the synthesized template"
            if len(self.stacks) <= 1
            else f"{len(self.stacks)} synthesized templates (stacks {', '.join(self.stacks)}, in that order)"
        )
        lines = [
            f"{self.created} resources created by moto's CloudFormation from {templates} "
            f"({'cached ' if self.synthesis_cached else ''}synthesis, deployed in {self.seconds:.1f} s)"
        ]
        for action in (APPLIED, LOCAL_RUNTIME, SKIPPED, NOT_EMULATED):
            groups: dict[tuple[str, str], list[str]] = defaultdict(list)
            for item in self.of(action):
                groups[(item.resource_type, item.why)].append(item.logical_id)
            for (resource_type, why), logical_ids in groups.items():
                named = [i for i in logical_ids if i]
                if not named:
                    what = resource_type or "local cloud"
                elif len(named) <= 2:
                    what = f"{', '.join(named)} ({resource_type})"
                else:
                    what = f"{len(named)} {resource_type}"
                lines.append(f"{action}: {what}: {why}")
        lines += [f"template: {note}" for note in dict.fromkeys(self.notes)]  # each stack's: once
        return lines
