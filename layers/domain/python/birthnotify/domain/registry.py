"""The registry: trusts, authorities and their sharing agreements, validated when loaded.

It is one TOML file under version control (config/registry.toml). The ingest function reads it to route
and filter records; the CDK stack reads the same file to create one queue, key and role per authority and
one upload role per trust.

An authority is named by its GSS code. Its name, type and districts come from the councils data (every
English and Welsh council, config/authorities-england-wales.csv, beside the registry) unless the registry
gives them: a registry entry may name the council as it prefers, and may list a district the data does not
know yet (a code from a reorganisation newer than the data). A listed district that the data places under
another council is refused: a typo must never send a family's record to the wrong council.
"""

from __future__ import annotations

import re
import tomllib
from datetime import date
from enum import StrEnum
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, PrivateAttr, ValidationInfo, model_validator

from birthnotify.domain.codes import GSS_CODE, ODS_ORGANISATION, is_district, outside_country
from birthnotify.domain.councils import Councils, CouncilsDataError
from birthnotify.domain.record import SHAREABLE_FIELDS

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_AGREEMENT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{1,63}$")
_MESH_MAILBOX = re.compile(r"^[A-Z0-9]{4,20}$")
_PRINCIPAL = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:(root|role/[\w+=,.@/-]+|user/[\w+=,.@/-]+)$")


def _check(pattern: re.Pattern[str], what: str) -> AfterValidator:
    def check(value: str) -> str:
        if not pattern.match(value):
            raise ValueError(f"{value!r} is not a valid {what}")
        return value

    return AfterValidator(check)


GssCode = Annotated[str, _check(GSS_CODE, "ONS GSS code (a country letter and eight digits)")]
OdsCode = Annotated[str, _check(ODS_ORGANISATION, "ODS organisation code")]
Email = Annotated[str, _check(_EMAIL, "email address")]
AgreementId = Annotated[str, _check(_AGREEMENT_ID, "agreement id (letters, digits, . _ -)")]
PrincipalArn = Annotated[str, _check(_PRINCIPAL, "IAM principal ARN (account root, role or user)")]
MeshMailbox = Annotated[str, _check(_MESH_MAILBOX, "MESH mailbox id (upper-case letters and digits, e.g. RX1OT001)")]


class NotificationMode(StrEnum):
    PER_FILE = "per_file"
    DIGEST = "digest"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SharingAgreement(_Strict):
    """What one authority may receive, why, and for how long."""

    id: AgreementId
    purpose: str = Field(min_length=10)
    valid_from: date
    valid_to: date | None = None
    allowed_fields: frozenset[str] = Field(min_length=1)

    @model_validator(mode="after")
    def _coherent(self) -> SharingAgreement:
        unknown = sorted(self.allowed_fields - SHAREABLE_FIELDS)
        if unknown:
            raise ValueError(
                f"agreement {self.id}: allowed_fields has unknown or unshareable fields {unknown}; "
                f"choose from {sorted(SHAREABLE_FIELDS)}"
            )
        if self.valid_to is not None and self.valid_to < self.valid_from:
            raise ValueError(f"agreement {self.id}: valid_to {self.valid_to} is before valid_from")
        return self

    @cached_property
    def shared_fields(self) -> dict[str, bool]:
        """``allowed_fields`` in the form pydantic's ``include=`` takes fastest (a dict, built once)."""
        return dict.fromkeys(sorted(self.allowed_fields), True)

    def in_force_on(self, day: date) -> bool:
        return self.valid_from <= day and (self.valid_to is None or day <= self.valid_to)


class Authority(_Strict):
    """A council that runs children's services, with the districts it serves in a two-tier area."""

    gss_code: GssCode
    name: str = Field(min_length=2, description="From the councils data unless the registry gives one.")
    type: str = Field(min_length=2, description="From the councils data (unitary, county, ...).")
    contact_emails: list[Email] = Field(min_length=1)
    districts: list[GssCode] = Field(
        [],
        description="The districts it serves: the councils data's, and any the registry lists that the "
        "data does not know yet.",
    )
    consumer_principals: list[PrincipalArn] = []
    notification_mode: NotificationMode = NotificationMode.PER_FILE
    agreements: list[SharingAgreement] = []

    @model_validator(mode="after")
    def _coherent(self) -> Authority:
        not_districts = [code for code in self.districts if not is_district(code)]
        if not_districts:
            raise ValueError(f"authority {self.gss_code}: districts must be E07 codes, not {not_districts}")
        ordered = sorted(self.agreements, key=lambda a: a.valid_from)
        for earlier, later in zip(ordered, ordered[1:], strict=False):
            if earlier.valid_to is None or earlier.valid_to >= later.valid_from:
                raise ValueError(
                    f"authority {self.gss_code}: agreements {earlier.id} and {later.id} overlap; "
                    "end the earlier one the day before the later one starts"
                )
        return self

    def agreement_on(self, day: date) -> SharingAgreement | None:
        """The agreement in force on ``day``, if any (agreements never overlap)."""
        return next((a for a in self.agreements if a.in_force_on(day)), None)


class Trust(_Strict):
    """An NHS trust allowed to upload under ``inbound/<ods_code>/``, and to send files by MESH from
    ``mesh_mailbox`` (its reports then go back to that mailbox)."""

    ods_code: OdsCode
    name: str = Field(min_length=2)
    contact_emails: list[Email] = Field(min_length=1)
    uploader_principals: list[PrincipalArn] = []
    mesh_mailbox: MeshMailbox | None = None


class PostcodeDirectoryColumns(_Strict):
    """The postcode directory, and the column names of its ONS (NSPL/ONSPD) release; the first present one is
    used, because ONS renames them between releases (laua, lad25cd, lad26cd ...)."""

    file: str = Field(
        "postcodes.csv",
        description="Relative to the registry: a directory CSV (a small extract, "
        "indexed in memory when loaded) or an index built by `birthnotify postcodes build`.",
    )
    postcode: list[str] = ["pcds", "pcd", "pcd7", "pcd8", "postcode"]
    district: list[str] = ["lad26cd", "lad25cd", "lad24cd", "lad23cd", "laua", "oslaua"]
    county: list[str] = ["cty26cd", "cty25cd", "cty24cd", "cty23cd", "cty"]
    terminated: list[str] = ["doterm"]
    """Date of termination (empty for a live postcode): counted only, since terminated postcodes still route."""


class CouncilsFile(_Strict):
    """Where the councils data is: a CSV of every English and Welsh council, relative to the registry."""

    file: str = "authorities-england-wales.csv"


class Registry(_Strict):
    """Every trust and authority the pipeline serves, over the councils data.

    Validate it with ``load_registry`` (which reads the councils data beside it), or with
    ``Registry.model_validate(raw, context={"councils": councils})``."""

    schema_version: Literal[1]
    operator_emails: list[Email] = Field(min_length=1)
    councils: CouncilsFile = CouncilsFile()
    postcode_directory: PostcodeDirectoryColumns = PostcodeDirectoryColumns()
    trusts: list[Trust] = Field(min_length=1)
    authorities: list[Authority] = Field(min_length=1)
    _councils: Councils = PrivateAttr()
    _trusts: dict[str, Trust] = PrivateAttr(default_factory=dict)
    _authorities: dict[str, Authority] = PrivateAttr(default_factory=dict)
    _routes: dict[str, tuple[str, ...]] = PrivateAttr(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _from_councils_data(cls, data: Any, info: ValidationInfo) -> Any:
        """Fill each authority's name, type and districts from the councils data, and refuse a code that is
        not a current council running children's services."""
        councils = (info.context or {}).get("councils")
        if not isinstance(councils, Councils):
            raise ValueError(
                "the registry needs the councils data: load it with load_registry(), or validate "
                "with context={'councils': Councils.load(...)}"
            )
        if not isinstance(data, dict) or not isinstance(data.get("authorities"), list):
            return data
        problems: list[str] = []
        authorities = []
        for entry in data["authorities"]:
            code = entry.get("gss_code") if isinstance(entry, dict) else None
            if not isinstance(code, str):
                authorities.append(entry)  # the field's own validation says what is wrong
                continue
            if problem := _not_childrens_services(code, councils):
                problems.append(problem)
                continue
            council = councils.council(code)
            assert council is not None  # _not_childrens_services says so otherwise
            listed = entry.get("districts", [])
            if not isinstance(listed, list) or not all(isinstance(d, str) for d in listed):
                authorities.append(entry)  # the districts field's own validation says what is wrong
                continue
            elsewhere = [
                f"{d} ({councils.name(d)}: {', '.join(councils.childrens_services(d))})"
                for d in listed
                if isinstance(d, str) and councils.childrens_services(d) not in ((), (code,))
            ]
            if elsewhere:
                problems.append(
                    f"authority {code}: the councils data places districts {elsewhere} under another "
                    "council; remove them (districts come from the data)"
                )
            authorities.append(
                {
                    "name": council.name,
                    "type": council.type,
                    **entry,
                    "districts": sorted({*councils.districts(code), *listed}),
                }
            )
        if problems:
            raise ValueError("; ".join(problems))
        return {**data, "authorities": authorities}

    @model_validator(mode="after")
    def _unique(self) -> Registry:
        def duplicates(values: list[str]) -> list[str]:
            return sorted({v for v in values if values.count(v) > 1})

        for what, values in (
            ("trust ods_code", [t.ods_code for t in self.trusts]),
            ("trust mesh_mailbox", [t.mesh_mailbox for t in self.trusts if t.mesh_mailbox]),
            ("authority gss_code", [a.gss_code for a in self.authorities]),
            ("district (listed under two counties)", [d for a in self.authorities for d in a.districts]),
            ("agreement id", [g.id for a in self.authorities for g in a.agreements]),
        ):
            if dup := duplicates(values):
                raise ValueError(f"registry: duplicate {what}: {dup}")
        return self

    def model_post_init(self, context: Any) -> None:
        councils = context["councils"]  # the before-validator has checked it is there
        self._councils = councils
        self._trusts = {t.ods_code: t for t in self.trusts}
        self._authorities = {a.gss_code: a for a in self.authorities}
        self._routes = {council.gss_code: councils.childrens_services(council.gss_code) for council in councils}
        self._routes.update({d: (a.gss_code,) for a in self.authorities for d in a.districts})

    @property
    def councils_data(self) -> Councils:
        """Every English and Welsh council, current and ended."""
        return self._councils

    def trust(self, ods_code: str) -> Trust | None:
        return self._trusts.get(ods_code)

    def trust_name(self, ods_code: str) -> str | None:
        trust = self.trust(ods_code)
        return trust.name if trust else None

    def childrens_services(self, gss_code: str) -> tuple[str, ...]:
        """The councils that run children's services for a council code's area (see Councils); a district
        the registry lists routes to its authority."""
        return self._routes.get(gss_code, ())

    def trust_with_mailbox(self, mailbox: str) -> Trust | None:
        """The trust whose MESH mailbox this is (mailbox ids compare upper-case, as MESH treats them)."""
        wanted = mailbox.upper()
        return next((t for t in self.trusts if t.mesh_mailbox == wanted), None)

    def authority(self, gss_code: str) -> Authority | None:
        """The registered authority that runs children's services for a council code (a district's county,
        an ended council's one successor); None when that council is not in the registry."""
        resolved = self._routes.get(gss_code, ())
        return self._authorities.get(resolved[0]) if len(resolved) == 1 else None

    def council_name(self, gss_code: str) -> str | None:
        """The name of a council: the registry's, else the councils data's."""
        authority = self._authorities.get(gss_code)
        return authority.name if authority else self._councils.name(gss_code)


def _not_childrens_services(code: str, councils: Councils) -> str | None:
    """Why ``code`` cannot be a registry authority, or None when it is a current children's services council."""
    if not GSS_CODE.match(code):
        return None  # the field's own validation says what is wrong
    if country := outside_country(code):
        return f"authority {code} is in {country}, outside this service (England and Wales)"
    council = councils.council(code)
    if council is None:
        return (
            f"authority {code} is not a council in the councils data ({councils.source}): check the code, or "
            "refresh the data if the council is new"
        )
    if not council.current:
        now = ", ".join(f"{c} ({councils.name(c)})" for c in councils.childrens_services(code))
        ended = f" on {council.end_date}" if council.end_date else ""
        return f"authority {code} ({council.name}) ended{ended}; its area is now served by {now}: register that instead"
    if not council.runs_childrens_services:
        county = council.childrens_services_gss
        return (
            f"authority {code} ({council.name}) is a district: {councils.name(county)} ({county}) runs its "
            "children's services; register that council (its districts come from the councils data)"
        )
    return None


class RegistryError(ValueError):
    """The registry file is missing or invalid; the message says where and how to fix it."""


def load_registry(path: str | Path) -> Registry:
    """Read and validate the registry TOML file, over the councils data it names (beside it by default)."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise RegistryError(f"registry file {path} does not exist") from exc
    except tomllib.TOMLDecodeError as exc:
        raise RegistryError(f"registry file {path} is not valid TOML: {exc}") from exc
    try:
        councils_file = CouncilsFile.model_validate(raw.get("councils", {})).file
        councils = Councils.load(path.parent / councils_file)
    except CouncilsDataError as exc:
        raise RegistryError(f"registry file {path}: {exc}") from exc
    except ValueError as exc:
        raise RegistryError(f"registry file {path} is invalid:\n{exc}") from exc
    try:
        return Registry.model_validate(raw, context={"councils": councils})
    except ValueError as exc:
        raise RegistryError(f"registry file {path} is invalid:\n{exc}") from exc
