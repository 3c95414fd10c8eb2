"""Formats of the public codes the pipeline routes on (ONS GSS, NHS ODS) and the upper-tier rule."""

from __future__ import annotations

import re

GSS_CODE = re.compile(r"^[ENSW][0-9]{8}$")
"""ONS Government Statistical Service code: country letter and eight digits (E08000035)."""

ODS_ORGANISATION = re.compile(r"^[A-Z0-9]{3,5}$")
"""ODS code of a trust (three characters, e.g. RR8) or a site (five)."""

ODS_GP_PRACTICE = re.compile(r"^[A-Z][0-9]{5}$")
"""ODS code of a GP practice: a letter and five digits (B86001)."""

# Entity prefixes (first three characters) of the bodies that run children's services in England, and
# the single-tier councils elsewhere. E07 non-metropolitan districts do not: their county does.
UPPER_TIER_ENTITIES = frozenset({"E06", "E08", "E09", "E10", "W06", "S12", "N09"})
DISTRICT_ENTITY = "E07"
NO_COUNTY = "E99999999"
"""Pseudo county code ONS uses for areas without a county council."""


def is_no_county(gss_code: str) -> bool:
    """True for the pseudo county code ONS gives areas without a county council (E99999999, W99999999...)."""
    return gss_code[1:] == "99999999"


def is_upper_tier(gss_code: str) -> bool:
    """True when the council with this code runs children's services itself."""
    return gss_code[:3] in UPPER_TIER_ENTITIES


def is_district(gss_code: str) -> bool:
    """True for a two-tier district, whose children's services are its county's."""
    return gss_code[:3] == DISTRICT_ENTITY
