"""Where each notification chain of a trust went: so an AMEND that moves a family to another council also
tells the council that had the record (a moved-out notice, no new address), and a CANCEL reaches every
council that had it.

One index per trust, read when a file starts and written (merged, conditionally) when it ends: two requests
per file, never one per record. Chains are kept as long as an AMEND or CANCEL can still come for them: the
upload contract refuses a baby older than ``max_baby_age_days``, so a chain untouched for longer (plus a
margin) is dropped.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from birthnotify.application.ports import DestinationStore

SAVE_ATTEMPTS = 5
KEEP_MARGIN_DAYS = 60
MAX_NEW_CHAINS_PER_FILE = 25_000
"""More than the largest trust's births in two years (an AMEND or CANCEL comes within a year of the birth): a
file with more new chains than this (a bulk load) indexes only these, so memory stays bounded (~10 MB); the
rest are counted and logged, and their outcomes are still in the ledger."""


class Destinations:
    """A trust's index as this file's run sees it: what earlier files recorded, plus this file's forwards."""

    def __init__(self, chains: dict[str, Any], version: str | None) -> None:
        self._chains: dict[str, dict[str, Any]] = chains
        self._version = version
        self._added: dict[str, dict[str, str]] = {}
        self._left: dict[str, dict[str, bool]] = {}
        self.unindexed = 0
        """Chains this file could not add (past MAX_NEW_CHAINS_PER_FILE)."""
        """Chain -> council -> whether it was told the family moved out (False: it has them again)."""

    @classmethod
    def load(cls, store: DestinationStore, trust: str) -> Destinations:
        index, version = store.get(trust)
        return cls(dict(index.get("chains", {})), version)

    def previous(self, chain: str) -> dict[str, str]:
        """Council -> agreement id of everything sent in this chain so far (earlier files and this one)."""
        known = self._chains.get(chain)
        return {**(known["councils"] if known else {}), **self._added.get(chain, {})}

    def moved_out_of(self, chain: str) -> set[str]:
        """The councils already told that the family of this chain moved out of their area (and not since back)."""
        known = self._chains.get(chain)
        told = self._left.get(chain)
        if told is None and not (known and known.get("left")):
            return set()  # most chains: no council was ever told (``add`` asks this for every forward)
        left = {gss: True for gss in (known.get("left", []) if known else [])}
        left.update(told or {})
        return {gss for gss, gone in left.items() if gone}

    def add(self, chain: str, gss_code: str, agreement_id: str) -> None:
        """The council received something of this chain (and, if it had been told they left, they are back)."""
        if chain not in self._added and len(self._added) >= MAX_NEW_CHAINS_PER_FILE:
            self.unindexed += 1
            return
        self._added.setdefault(chain, {})[gss_code] = agreement_id
        if gss_code in self.moved_out_of(chain):
            self._left.setdefault(chain, {})[gss_code] = False

    def told_moved_out(self, chain: str, gss_code: str) -> None:
        self._left.setdefault(chain, {})[gss_code] = True
        self._added.setdefault(chain, {})

    def changes(self) -> tuple[dict[str, dict[str, str]], dict[str, dict[str, bool]], int]:
        """This file's additions so far (to carry over to a resumed run): forwards, moved-out notices, and the
        count of chains it could not add."""
        return (
            {chain: dict(councils) for chain, councils in self._added.items()},
            {chain: dict(left) for chain, left in self._left.items()},
            self.unindexed,
        )

    def apply_changes(self, added: dict[str, dict[str, str]], left: dict[str, dict[str, bool]], unindexed: int) -> None:
        """Take on an interrupted run's additions (``changes``), before this run adds its own."""
        self._added = {chain: dict(councils) for chain, councils in added.items()}
        self._left = {chain: dict(gone) for chain, gone in left.items()}
        self.unindexed = unindexed

    def save(self, store: DestinationStore, trust: str, day: date, keep_days: int) -> None:
        """Merge this file's forwards into the stored index; another file's run writing meanwhile is merged
        too (the write is conditional on the version read)."""
        if not self._added:
            return
        chains, version = self._chains, self._version
        today = day.isoformat()
        oldest = (day - timedelta(days=keep_days + KEEP_MARGIN_DAYS)).isoformat()
        for _ in range(SAVE_ATTEMPTS):
            # Untouched entries are kept as they are, not copied (an index holds up to two years of chains):
            # an entry this file touched is a new dict, never one changed in place.
            kept = {chain: entry for chain, entry in chains.items() if entry.get("day", oldest) >= oldest}
            for chain, councils in self._added.items():
                earlier = chains.get(chain)
                entry = dict(earlier) if earlier is not None else {"councils": {}}
                entry["councils"] = {**entry["councils"], **councils}
                if "left" in entry or chain in self._left:  # most chains never moved out: nothing to merge
                    left = {gss: True for gss in entry.get("left", [])} | self._left.get(chain, {})
                    if any(left.values()):
                        entry["left"] = sorted(gss for gss, gone in left.items() if gone)
                    else:
                        entry.pop("left", None)
                entry["day"] = today
                kept[chain] = entry
            if store.put(trust, {"schema_version": 1, "chains": kept}, version):
                self._chains, self._version, self._added, self._left = kept, None, {}, {}
                return
            index, version = store.get(trust)
            chains = dict(index.get("chains", {}))
        raise RuntimeError(f"the destination index of trust {trust} kept changing: {SAVE_ATTEMPTS} attempts")
