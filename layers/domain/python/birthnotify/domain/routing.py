"""Decides what happens to a valid notification: forwarded to an authority, withheld, or held.

Where the baby lives is read twice, when the trust gives both: from residence_la_code and from the postcode
(through the postcode directory). Each leads to a *place*: the children's services council(s) of a council
code by the councils data (a district's county; an ended council's successors), or outside this service
(Scotland, Northern Ireland, the Channel Islands, the Isle of Man), or a code nobody knows. The two must
agree; where an ended council was split, the postcode decides between its successors.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from birthnotify.domain.codes import outside_country, outside_country_of_postcode
from birthnotify.domain.messages import HeldReason, WithheldReason
from birthnotify.domain.postcodes import PostcodeArea, PostcodeDirectory
from birthnotify.domain.record import BirthNotification
from birthnotify.domain.registry import Authority, Registry, SharingAgreement

PSEUDO_POSTCODE_AREA = "ZZ99"


@dataclass(frozen=True, slots=True)
class Forward:
    authority: Authority
    agreement: SharingAgreement


@dataclass(frozen=True, slots=True)
class Withhold:
    reason: WithheldReason


@dataclass(frozen=True, slots=True)
class Hold:
    reason: HeldReason
    gss_code: str | None = None
    """The council the record is held for (NO_AGREEMENT) or about (AMBIGUOUS_SUCCESSOR: the ended council)."""
    name: str | None = None


Decision = Forward | Withhold | Hold
_WITHHOLD = {reason: Withhold(reason) for reason in WithheldReason}


@dataclass(frozen=True, slots=True)
class Place:
    """Where a council code or a postcode leads."""

    councils: tuple[str, ...] = ()
    """The children's services councils it may be: one, or several for an ended council that was split."""
    outside: bool = False
    """In Scotland, Northern Ireland, the Channel Islands or the Isle of Man."""
    code: str | None = None
    """The council code it was read from (named when the successors are ambiguous; compared when unknown)."""


_OUTSIDE = Place(outside=True)


class Router:
    """Routes by residence_la_code and the postcode, through the councils data and the postcode directory; a
    record the two place differently is held for a person to decide."""

    def __init__(self, registry: Registry, postcodes: PostcodeDirectory, processing_day: date) -> None:
        self._registry = registry
        self._postcodes = postcodes
        # Decisions depend only on the council and the (fixed) processing day: made once per council.
        self._by_council: dict[str, Forward | Hold] = {}
        for council in registry.councils_data.childrens_services_councils:
            self._by_council[council.gss_code] = Hold(HeldReason.NO_AGREEMENT, council.gss_code, council.name)
        for authority in registry.authorities:
            agreement = authority.agreement_on(processing_day)
            self._by_council[authority.gss_code] = (
                Forward(authority, agreement)
                if agreement
                else Hold(HeldReason.NO_AGREEMENT, authority.gss_code, authority.name)
            )
        self._held = {reason: Hold(reason) for reason in HeldReason}
        self._places: dict[str, Place] = {}
        self._areas: dict[PostcodeArea, Place] = {}

    def forward_to(self, gss_code: str, agreement_id: str | None = None) -> Forward | None:
        """How a council that received a record earlier is sent something more about it (a cancellation, a
        moved-out notice): under its agreement in force on the processing day, else the one it received the
        record under; None when the registry no longer has either."""
        decision = self._by_council.get(gss_code)
        if isinstance(decision, Forward):
            return decision
        authority = self._registry.authority(gss_code)
        agreement = next((a for a in authority.agreements if a.id == agreement_id), None) if authority else None
        return Forward(authority, agreement) if authority is not None and agreement is not None else None

    def decide(self, record: BirthNotification) -> Decision:
        # Withholding comes first: such a record is never shared, whatever its address.
        if not record.live_birth:
            return _WITHHOLD[WithheldReason.STILLBIRTH]
        if record.restricted:
            return _WITHHOLD[WithheldReason.RESTRICTED]
        if record.sharing_objection:
            return _WITHHOLD[WithheldReason.SHARING_OBJECTION]
        pseudo = record.postcode.startswith(PSEUDO_POSTCODE_AREA)
        by_postcode = None if pseudo else self._postcode_place(record.postcode)
        code = record.residence_la_code
        if code is None:
            if by_postcode is None:
                return self._held[HeldReason.PSEUDO_POSTCODE if pseudo else HeldReason.POSTCODE_NOT_FOUND]
            return self._decision(by_postcode)
        by_code = self._code_place(code)
        if by_postcode is None:
            return self._decision(by_code)
        agreed = _agree(by_code, by_postcode)
        return self._decision(agreed) if agreed is not None else self._held[HeldReason.RESIDENCE_CONFLICT]

    def _decision(self, place: Place) -> Forward | Hold:
        if len(place.councils) == 1:
            return self._by_council[place.councils[0]]
        if place.outside:
            return self._held[HeldReason.OUTSIDE_SERVICE]
        if place.councils:
            return Hold(
                HeldReason.AMBIGUOUS_SUCCESSOR,
                place.code,
                self._registry.council_name(place.code) if place.code else None,
            )
        return self._held[HeldReason.NO_AUTHORITY]

    def _code_place(self, code: str) -> Place:
        place = self._places.get(code)
        if place is None:
            if outside_country(code):
                return _OUTSIDE
            place = Place(self._registry.childrens_services(code), code=code)
            if place.councils:  # known codes only: a file of invented codes must not grow this without bound
                self._places[code] = place
        return place

    def _postcode_place(self, postcode: str) -> Place | None:
        """Where a postcode lies by the directory, or by its area when the directory lacks it (BT, GY, JE, IM
        and the Scottish areas); None when neither can say."""
        area = self._postcodes.lookup(postcode)
        if area is None:
            return _OUTSIDE if outside_country_of_postcode(postcode) else None
        place = self._areas.get(area)
        if place is None:
            place = self._code_place(area.district)
            if not place.councils and not place.outside and area.county:
                # A district code newer than the councils data: its county may still be known.
                by_county = self._code_place(area.county)
                place = by_county if by_county.councils else place
            self._areas[area] = place
        return place


def _agree(by_code: Place, by_postcode: Place) -> Place | None:
    """The place both readings allow, or None when they contradict each other."""
    if by_code.outside or by_postcode.outside:
        return _OUTSIDE if by_code.outside and by_postcode.outside else None
    if not by_code.councils or not by_postcode.councils:  # a code the data does not know, on either side
        return by_code if by_code.code == by_postcode.code else None
    if len(by_postcode.councils) == 1 and by_postcode.councils[0] in by_code.councils:
        return by_postcode  # the postcode agrees with the code, or decides between an ended council's successors
    if len(by_code.councils) == 1 and by_code.councils[0] in by_postcode.councils:
        return by_code
    common = tuple(c for c in by_code.councils if c in by_postcode.councils)
    if not common:
        return None
    if len(common) == 1:
        return Place(common)
    return by_code  # an ended, split council on both sides: still ambiguous, named by the code given
