"""Decides what happens to a valid notification: forwarded to an authority, withheld, or held."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

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
    authority: Authority | None = None


Decision = Forward | Withhold | Hold
_WITHHOLD = {reason: Withhold(reason) for reason in WithheldReason}


class Router:
    """Routes by residence_la_code when given, else by postcode; a district goes to its county. When both
    are given and lead to different councils, the record is held for a person to decide."""

    def __init__(self, registry: Registry, postcodes: PostcodeDirectory, processing_day: date) -> None:
        self._registry = registry
        self._postcodes = postcodes
        # Decisions depend only on the authority and the (fixed) processing day: made once per authority.
        self._by_authority: dict[str, Forward | Hold] = {}
        for authority in registry.authorities:
            agreement = authority.agreement_on(processing_day)
            self._by_authority[authority.gss_code] = (
                Forward(authority, agreement) if agreement else Hold(HeldReason.NO_AGREEMENT, authority)
            )
        self._held = {reason: Hold(reason) for reason in HeldReason}

    def decide(self, record: BirthNotification) -> Decision:
        # Withholding comes first: such a record is never shared, whatever its address.
        if not record.live_birth:
            return _WITHHOLD[WithheldReason.STILLBIRTH]
        if record.restricted:
            return _WITHHOLD[WithheldReason.RESTRICTED]
        if record.sharing_objection:
            return _WITHHOLD[WithheldReason.SHARING_OBJECTION]
        authority_or_reason = self._authority(record)
        if isinstance(authority_or_reason, HeldReason):
            return self._held[authority_or_reason]
        return self._by_authority[authority_or_reason.gss_code]

    def _authority(self, record: BirthNotification) -> Authority | HeldReason:
        area = None if record.postcode.startswith(PSEUDO_POSTCODE_AREA) else self._postcodes.lookup(record.postcode)
        if record.residence_la_code:
            code = record.residence_la_code
            if area is not None and self._conflict(code, area):
                return HeldReason.RESIDENCE_CONFLICT
            return self._registry.authority(code) or HeldReason.NO_AUTHORITY
        if area is None:
            return HeldReason.PSEUDO_POSTCODE if record.postcode.startswith(PSEUDO_POSTCODE_AREA) \
                else HeldReason.POSTCODE_NOT_FOUND
        by_county = self._registry.authority(area.county) if area.county else None
        return by_county or self._registry.authority(area.district) or HeldReason.NO_AUTHORITY

    def _conflict(self, code: str, area: PostcodeArea) -> bool:
        """True when the council code and the postcode lead to different children's services councils."""
        if code in (area.district, area.county):
            return False
        by_code = self._registry.authority(code)
        by_postcode = self._registry.authority(area.county) if area.county else None
        by_postcode = by_postcode or self._registry.authority(area.district)
        if by_code is not None and by_postcode is not None:
            return by_code.gss_code != by_postcode.gss_code
        # At least one side is a council the registry does not serve: compare the councils themselves.
        return (by_code.gss_code if by_code else code) != (area.county or area.district)
