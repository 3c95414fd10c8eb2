"""Which authority stack holds which authority: a fixed range of the ONS code space, never a count.

A GSS code is an entity code and a six-digit number (``E06000014``: unitary authority number 14). An
authority belongs to the shard of its entity code and the block of ``SHARD_SPAN`` numbers its number falls
in (``E06000014`` -> ``E06-0``, numbers 0-24). So:

- a shard never holds more than ``SHARD_SPAN`` authorities, however large the registry grows, because a
  block of 25 numbers has at most 25 codes: every stack stays far inside CloudFormation's limits by
  construction, not by luck;
- an authority never moves: its shard depends on its own code alone, not on which other authorities the
  registry lists, so adding or removing one (even "in the middle" of the code order) changes only the
  stack of its own block;
- ONS gives a new council the next number of its entity code and never reuses one, so new councils fill
  new blocks instead of crowding old ones.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TypeVar

SHARD_SPAN = 25
"""Codes per authority stack. At most 10 resources and 2 outputs per authority: <= 250 resources and <= 50
outputs per stack, half of CloudFormation's limits (500 and 200), with room for per-authority additions."""

_HasCode = TypeVar("_HasCode")


def shard_of(gss_code: str) -> str:
    """``E06000014`` -> ``E06-0``: the entity code and the block of ``SHARD_SPAN`` numbers."""
    entity, number = gss_code[:3], gss_code[3:]
    if len(gss_code) != 9 or not number.isdigit():
        raise ValueError(f"{gss_code!r} is not a GSS code (a letter, two digits and six digits)")
    return f"{entity}-{int(number) // SHARD_SPAN}"


def shard_range(shard: str) -> tuple[str, str]:
    """The first and last code a shard can hold: ``E06-0`` -> (``E06000000``, ``E06000024``)."""
    entity, block = shard.split("-")
    first = int(block) * SHARD_SPAN
    return f"{entity}{first:06d}", f"{entity}{first + SHARD_SPAN - 1:06d}"


def by_shard(authorities: Iterable[_HasCode]) -> dict[str, list[_HasCode]]:
    """Authorities (anything with a ``gss_code``) grouped by shard, shards and members in code order."""
    shards: dict[str, list[_HasCode]] = {}
    for authority in sorted(authorities, key=lambda a: a.gss_code):  # type: ignore[attr-defined]
        shards.setdefault(shard_of(authority.gss_code), []).append(authority)  # type: ignore[attr-defined]
    return dict(sorted(shards.items()))
