"""Formats of the public codes the pipeline routes on (ONS GSS, NHS ODS, postcodes) and which of them lie
outside this service."""

from __future__ import annotations

import re

GSS_CODE = re.compile(r"^(?:[ENSW][0-9]{8}|[LM]99999999)$")
"""ONS Government Statistical Service code: a country letter and eight digits (E08000035), or the
pseudo-codes ONS gives the Channel Islands (L99999999) and the Isle of Man (M99999999). ASCII digits only."""

ODS_ORGANISATION = re.compile(r"^[A-Z0-9]{3,5}$")
"""ODS code of a trust (three characters, e.g. RR8) or a site (five)."""

ODS_GP_PRACTICE = re.compile(r"^[A-Z][0-9]{5}$")
"""ODS code of a GP practice: a letter and five digits (B86001)."""

DISTRICT_ENTITY = "E07"
"""Entity code (first three characters) of a non-metropolitan district: its county runs children's services."""


def is_no_county(gss_code: str) -> bool:
    """True for the pseudo county code ONS gives areas without a county council (E99999999, W99999999...)."""
    return gss_code[1:] == "99999999"


def is_district(gss_code: str) -> bool:
    """True for a two-tier district, whose children's services are its county's."""
    return gss_code[:3] == DISTRICT_ENTITY


# -- outside this service: it serves councils in England and Wales -------------------------------------

OUTSIDE_COUNTRIES = {"S": "Scotland", "N": "Northern Ireland", "L": "the Channel Islands", "M": "the Isle of Man"}
"""GSS country letters of places outside this service (England is E, Wales W)."""

OUTSIDE_POSTCODE_AREAS: dict[str, str] = {
    "BT": "Northern Ireland",
    "GY": "the Channel Islands",
    "JE": "the Channel Islands",
    "IM": "the Isle of Man",
    **dict.fromkeys(
        ("AB", "DD", "DG", "EH", "FK", "G", "HS", "IV", "KA", "KW", "KY", "ML", "PA", "PH", "ZE"), "Scotland"
    ),
}
"""Postcode areas wholly outside England and Wales. TD (Galashiels) is left out: it crosses the border, so
only the postcode directory can say where a TD postcode is (Berwick-upon-Tweed is in England)."""


def outside_country(gss_code: str) -> str | None:
    """The country outside this service that a GSS code belongs to, or None for England and Wales."""
    return OUTSIDE_COUNTRIES.get(gss_code[:1])


def postcode_area(postcode: str) -> str:
    """The letters a postcode starts with: ``"G"`` for G1 1AA, ``"GY"`` for GY1 1AA."""
    letters = 0
    while letters < len(postcode) and "A" <= postcode[letters] <= "Z":
        letters += 1
    return postcode[:letters]


def outside_country_of_postcode(postcode: str) -> str | None:
    """The country outside this service a postcode's area lies in wholly, or None (England, Wales, TD)."""
    return OUTSIDE_POSTCODE_AREAS.get(postcode_area(postcode.strip().upper()))
