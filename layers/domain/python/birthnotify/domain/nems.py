"""The NEMS PDS Birth Notification (a FHIR STU3 message bundle, event ``pds-birth-notification-1``) read
as one record of the upload contract.

Resources are found by reference, never by position: the MessageHeader's ``focus`` is the Communication,
whose ``subject`` is the mother's Patient; her ``link`` leads to the RelatedPerson whose ``patient`` is the
baby. Observations are found by their SNOMED CT code and must be about the right person (their
``subject``). ``FIELD_SOURCES`` says, for every field of the upload contract, which element it comes from
and how it is read: it is what the reader runs and what docs/upload-contract.md shows, so the two cannot
disagree. Errors name the element (``baby Patient.birthDate``) rather than the contract's field.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_FLOOR, ROUND_HALF_UP, Decimal

from birthnotify.domain.fhir import Bundle, Element, Resource
from birthnotify.domain.problems import FileRejected, RowProblem
from birthnotify.domain.record import RECORD_FIELDS, ErrorCode
from birthnotify.shared.clock import LONDON

EVENT_CODE = "pds-birth-notification-1"
NHS_NUMBER_SYSTEM = "https://fhir.nhs.uk/Id/nhs-number"
ODS_SYSTEM = "https://fhir.nhs.uk/Id/ods-organization-code"
SNOMED_CT = "http://snomed.info/sct"
MESSAGE_EVENT_TYPE_URL = "https://fhir.nhs.uk/STU3/StructureDefinition/Extension-MessageEventType-1"
BIRTH_TIME_URL = "http://hl7.org/fhir/StructureDefinition/patient-birthTime"
STILLBORN_INDICATOR_SYSTEM = "https://fhir.nhs.uk/STU3/CodeSystem/EMS-PDS-StillBornIndicator-1"
CONFIDENTIALITY_SYSTEMS = frozenset(
    {"http://hl7.org/fhir/v3/Confidentiality", "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"}
)
RESTRICTED_CONFIDENTIALITY = frozenset({"R", "V"})
"""v3 Confidentiality codes that withhold a record: R (restricted) and V (very restricted)."""

BIRTH_WEIGHT, GESTATION, NUMBER_OF_BIRTHS, STILLBIRTH = "364589006", "412726003", "382341000000101", "237364002"
LIVE_OR_STILL = {"1": "Y", "2": "N", "3": "N", "4": "N"}
"""EMS-PDS-StillBornIndicator-1: 1 live; 2, 3, 4 still birth (ante-partum, intra-partum, indeterminate)."""
GENDER_TO_SEX = {"male": "1", "female": "2", "other": "9", "unknown": "X"}

_SAFE_CODE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_FHIR_DATE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")
_FHIR_DATE_TIME = re.compile(
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]{1,9})?)?"
    r"(Z|[+-][0-9]{2}:[0-9]{2})?$"
)
_FHIR_DECIMAL = re.compile(r"^-?[0-9]{1,9}(\.[0-9]{1,9})?$")
_DIRECTORY_ORGANISATION = re.compile(r"(?:^|/)Organization/([A-Za-z0-9]{3,10})$")


class _Unreadable(Exception):
    """A value that is present but cannot become the contract's field; the message says what the element
    must hold, never what it held."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Birth:
    """The resources of one birth notification, found by reference."""

    bundle: Bundle
    header: Element
    mother: Resource
    baby: Resource


# -- the file as a whole ---------------------------------------------------------------------------------


def check_is_birth_notification(bundle: Bundle) -> None:
    """FileRejected unless the bundle is a FHIR message whose event is a PDS Birth Notification."""
    if bundle.type != "message":
        raise FileRejected(
            ErrorCode.FILE_NOT_BIRTH_NOTIFICATION,
            f'Bundle.type is {_quoted(bundle.type)}, not "message": a file must be one FHIR message '
            f"(a PDS Birth Notification, event {EVENT_CODE}).",
        )
    headers = bundle.of_type("MessageHeader")
    if len(headers) != 1:
        raise FileRejected(
            ErrorCode.FILE_NOT_BIRTH_NOTIFICATION,
            f"The bundle has {len(headers)} MessageHeader resources; a message has exactly one (one "
            "birth notification per file).",
        )
    header = headers[0].element
    events = [*header.all("event"), *header.all("eventCoding")]  # STU3 event is a Coding; R4 renamed it
    codes = [event.text("code") for event in events]
    if EVENT_CODE not in codes:
        raise FileRejected(
            ErrorCode.FILE_NOT_BIRTH_NOTIFICATION,
            f"The message's event is {_quoted(codes[0] if codes else None)}, not {EVENT_CODE} (PDS "
            "Birth Notification): only birth notifications are accepted.",
        )


def _quoted(code: str | None) -> str:
    """A code from the file, shown only when it looks like a code (so no value is ever echoed)."""
    if code is None:
        return "absent"
    return f'"{code}"' if _SAFE_CODE.match(code) else "not a code"


# -- finding the resources -------------------------------------------------------------------------------


def locate(bundle: Bundle) -> Birth | list[RowProblem]:
    """Follow the references from the MessageHeader to the mother and the baby; the problems otherwise."""
    if bundle.repeated_full_urls:
        return [
            RowProblem(
                ErrorCode.ROW_MALFORMED,
                "Two entries of the bundle have the same fullUrl, so references "
                "to it cannot be resolved: give every entry its own.",
                "Bundle.entry.fullUrl",
            )
        ]
    header = bundle.of_type("MessageHeader")[0].element
    step = _follow(
        bundle, header.first("focus"), "Communication", "MessageHeader.focus", "the Communication (the event's focus)"
    )
    if isinstance(step, RowProblem):
        return [step]
    mother = _follow(
        bundle,
        step.element.first("subject"),
        "Patient",
        "Communication.subject",
        "the mother's Patient (the baby is found through her link)",
    )
    if isinstance(mother, RowProblem):
        return [mother]
    links = [link.first("other") for link in mother.element.all("link")]
    related = [
        resource
        for resource in (bundle.resolve(other) for other in links)
        if resource is not None and resource.type == "RelatedPerson"
    ]
    if not related:
        code = ErrorCode.REFERENCE_UNRESOLVED if links else ErrorCode.REQUIRED
        return [
            RowProblem(
                code,
                "The mother's Patient.link must reference the RelatedPerson, in this bundle, whose "
                "patient is the baby.",
                "mother Patient.link",
            )
        ]
    babies: dict[int, Resource] = {}
    for relation in related:
        baby = _follow(
            bundle, relation.element.first("patient"), "Patient", "RelatedPerson.patient", "the baby's Patient"
        )
        if isinstance(baby, RowProblem):
            return [baby]
        babies.setdefault(id(baby), baby)
    if len(babies) != 1:
        return [
            RowProblem(
                ErrorCode.ROW_MALFORMED,
                "The mother's links lead to more than one baby; a bundle is one birth notification, of one baby.",
                "mother Patient.link",
            )
        ]
    baby = next(iter(babies.values()))
    if baby is mother:
        return [
            RowProblem(
                ErrorCode.REFERENCE_UNRESOLVED,
                "RelatedPerson.patient references the mother's own Patient; it must reference the baby's.",
                "RelatedPerson.patient",
            )
        ]
    return Birth(bundle, header, mother, baby)


def _follow(
    bundle: Bundle, reference: Element | None, resource_type: str, where: str, what: str
) -> Resource | RowProblem:
    if reference is None or not reference.text("reference"):
        return RowProblem(ErrorCode.REQUIRED, f"{where} must reference {what}.", where)
    target = bundle.resolve(reference)
    if target is None or target.type != resource_type:
        return RowProblem(
            ErrorCode.REFERENCE_UNRESOLVED,
            f"{where} must reference {what}, a {resource_type} in this bundle (by its entry's fullUrl).",
            where,
        )
    return target


# -- reading each field -----------------------------------------------------------------------------------


def _notification_type(birth: Birth) -> str | None:
    extensions = birth.header.extensions(MESSAGE_EVENT_TYPE_URL)
    if not extensions:
        return "NEW"
    codes = {coding.text("code") for coding in extensions[0].path("valueCodeableConcept", "coding")}
    if "new" in codes:
        return "NEW"
    if codes & {"update", "delete"}:
        raise _Unreadable(
            ErrorCode.NOTIFICATION_TYPE_INVALID,
            "A birth notification bundle must be a new event message (NEMS sends no update or delete "
            "for it): send a correction as an AMEND row in a CSV or JSON Lines file, naming the "
            "bundle's Bundle.id as its original_notification_id.",
        )
    raise _Unreadable(ErrorCode.NOTIFICATION_TYPE_INVALID, "The messageEventType extension must have the code new.")


def _nhs_number(patient: Resource) -> str | None:
    numbers = {
        value
        for identifier in patient.element.all("identifier")
        if identifier.text("system") == NHS_NUMBER_SYSTEM and (value := identifier.text("value"))
    }
    if len(numbers) > 1:
        raise _Unreadable(
            ErrorCode.ROW_DUPLICATE_FIELD,
            "The Patient has more than one NHS number identifier: give one, so it is clear which counts.",
        )
    return next(iter(numbers), None)


def _date(value: str | None) -> str | None:
    if value is not None and not _FHIR_DATE.match(value):
        raise _Unreadable(
            ErrorCode.DATE_INVALID,
            "Give the full date, YYYY-MM-DD (a FHIR date with year, month and day; a partial date is not enough).",
        )
    return value


def _birth_time(birth: Birth) -> str | None:
    birth_date = birth.baby.element.first("birthDate")
    extensions = birth_date.extensions(BIRTH_TIME_URL) if birth_date is not None else []
    text = extensions[0].text("valueDateTime") if extensions else None
    if text is None:
        return None
    try:
        if not _FHIR_DATE_TIME.match(text):
            raise ValueError
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise _Unreadable(
            ErrorCode.TIME_INVALID,
            "valueDateTime must be a FHIR dateTime with a time of day, such as 2026-03-01T09:30:00+00:00.",
        ) from None
    if moment.tzinfo is not None:
        moment = moment.astimezone(LONDON)
    day = birth_date.value if birth_date is not None else None
    if day is not None and _FHIR_DATE.match(day) and moment.date().isoformat() != day:  # else birthDate's error
        raise _Unreadable(
            ErrorCode.TIME_INVALID,
            "The birth time falls on another day (in UK time) than the baby's "
            "Patient.birthDate: check its date and UTC offset.",
        )
    return moment.strftime("%H:%M:%S")


def _sex(birth: Birth) -> str | None:
    gender = birth.baby.element.text("gender")
    if gender is None:
        return None
    if gender not in GENDER_TO_SEX:
        raise _Unreadable(ErrorCode.SEX_CODE_INVALID, "Patient.gender must be male, female, other or unknown.")
    return GENDER_TO_SEX[gender]


def _observation(birth: Birth, code: str, subject: Resource, whose: str) -> Element | None:
    coded = [
        observation
        for observation in birth.bundle.of_type("Observation")
        if any(
            coding.text("system") == SNOMED_CT and coding.text("code") == code
            for coding in observation.element.path("code", "coding")
        )
    ]
    about = [
        observation for observation in coded if birth.bundle.resolve(observation.element.first("subject")) is subject
    ]
    if len(about) > 1:
        raise _Unreadable(
            ErrorCode.ROW_DUPLICATE_FIELD,
            f"The bundle has more than one such Observation about the {whose}: give one, so it is clear which counts.",
        )
    if not about and coded:
        raise _Unreadable(
            ErrorCode.REFERENCE_UNRESOLVED,
            f"The Observation's subject must reference the {whose}'s Patient in this bundle.",
        )
    return about[0].element if about else None


def _decimal(quantity: Element) -> Decimal | None:
    text = quantity.text("value")
    if text is None:
        return None
    if not _FHIR_DECIMAL.match(text):
        raise _Unreadable(ErrorCode.NUMBER_INVALID, "valueQuantity.value must be a decimal number.")
    return Decimal(text)


def _unit(quantity: Element) -> str | None:
    unit = quantity.text("code") or quantity.text("unit")
    return unit.strip().lower() if unit else None


def _quantity(
    birth: Birth, code: str, whose: str, units: dict[str | None, Decimal], unit_help: str, rounding: str
) -> str | None:
    subject = birth.mother if whose == "mother" else birth.baby
    observation = _observation(birth, code, subject, whose)
    quantity = observation.first("valueQuantity") if observation is not None else None
    amount = _decimal(quantity) if quantity is not None else None
    if quantity is None or amount is None:
        return None
    factor = units.get(_unit(quantity))
    if factor is None:
        raise _Unreadable(ErrorCode.NUMBER_INVALID, f"valueQuantity must be {unit_help}.")
    whole = (amount * factor).quantize(Decimal(1), rounding=rounding)
    if whole < 0:
        raise _Unreadable(ErrorCode.NUMBER_INVALID, "valueQuantity.value cannot be negative.")
    return str(int(whole))


_GRAMS = {
    None: Decimal(1),
    "g": Decimal(1),
    "gram": Decimal(1),
    "grams": Decimal(1),
    "kg": Decimal(1000),
    "kilogram": Decimal(1000),
    "kilograms": Decimal(1000),
}
_WEEKS = {
    None: Decimal(1),
    "wk": Decimal(1),
    "week": Decimal(1),
    "weeks": Decimal(1),
    "d": 1 / Decimal(7),
    "day": 1 / Decimal(7),
    "days": 1 / Decimal(7),
}


def _number_of_babies(birth: Birth) -> str | None:
    observation = _observation(birth, NUMBER_OF_BIRTHS, birth.mother, "mother")
    quantity = observation.first("valueQuantity") if observation is not None else None
    amount = _decimal(quantity) if quantity is not None else None
    if amount is None:
        return None
    if amount != amount.to_integral_value() or amount < 0:
        raise _Unreadable(ErrorCode.NUMBER_INVALID, "valueQuantity.value must be a whole number of babies.")
    return str(int(amount))


def _birth_order(birth: Birth) -> str | None:
    baby = birth.baby.element
    order = baby.text("multipleBirthInteger")
    if order is not None:
        return order
    multiple = baby.text("multipleBirthBoolean")
    if multiple == "false":
        return "1"
    if multiple == "true":
        raise _Unreadable(
            ErrorCode.REQUIRED,
            "multipleBirthBoolean true does not say which of the babies this is: "
            "give multipleBirthInteger (1 for the first-born).",
        )
    return None


def _live_birth(birth: Birth) -> str | None:
    observation = _observation(birth, STILLBIRTH, birth.baby, "baby")
    if observation is None:
        return None
    codes = [
        coding.text("code")
        for coding in observation.path("valueCodeableConcept", "coding")
        if coding.text("system") in (STILLBORN_INDICATOR_SYSTEM, None)
    ]
    flags = {LIVE_OR_STILL[code] for code in codes if code in LIVE_OR_STILL}
    if len(flags) != 1:
        raise _Unreadable(
            ErrorCode.FLAG_INVALID,
            "valueCodeableConcept must hold one EMS-PDS-StillBornIndicator-1 "
            "code: 1 (live), or 2, 3 or 4 (still birth).",
        )
    return flags.pop()


def _official_name(patient: Resource) -> Element | None:
    names = patient.element.all("name")
    official = [name for name in names if name.text("use") == "official"]
    chosen = official or names
    return chosen[0] if chosen else None


def _given_names(birth: Birth) -> str | None:
    name = _official_name(birth.mother)
    given = [value for part in name.all("given") if (value := part.value)] if name is not None else []
    return " ".join(given) or None


def _family_name(birth: Birth) -> str | None:
    name = _official_name(birth.mother)
    return name.text("family") if name is not None else None


def _address(birth: Birth) -> Element | None:
    addresses = [address for address in birth.baby.element.all("address") if address.text("use") != "old"]
    home = [address for address in addresses if address.text("use") == "home"]
    chosen = home or addresses
    return chosen[0] if chosen else None


def _address_lines(birth: Birth) -> list[str]:
    """The address's lines, then its city and district unless already a line; at most four, the rest joined
    into the fourth."""
    address = _address(birth)
    if address is None:
        return []
    parts = [text for line in address.all("line") if (text := (line.value or "").strip())]
    for name in ("city", "district"):
        extra = (address.text(name) or "").strip()
        if extra and extra.casefold() not in {part.casefold() for part in parts}:
            parts.append(extra)
    return [*parts[:3], ", ".join(parts[3:])] if len(parts) > 4 else parts


def _address_line(index: int) -> Callable[[Birth], str | None]:
    def read(birth: Birth) -> str | None:
        lines = _address_lines(birth)
        return lines[index] if index < len(lines) else None

    return read


def _postcode(birth: Birth) -> str | None:
    address = _address(birth)
    return address.text("postalCode") if address is not None else None


def _gp_practice(birth: Birth) -> str | None:
    practitioners = birth.mother.element.all("generalPractitioner")
    for practitioner in practitioners:
        for identifier in practitioner.all("identifier"):
            if identifier.text("system") == ODS_SYSTEM and identifier.text("value"):
                return identifier.text("value")
        organisation = birth.bundle.resolve(practitioner)
        if organisation is not None and organisation.type == "Organization":
            for identifier in organisation.element.all("identifier"):
                if identifier.text("system") == ODS_SYSTEM and identifier.text("value"):
                    return identifier.text("value")
        directory = _DIRECTORY_ORGANISATION.search(practitioner.text("reference") or "")
        if directory:
            return directory[1]
    if practitioners:
        raise _Unreadable(
            ErrorCode.ODS_CODE_INVALID,
            "generalPractitioner gives no ODS code: reference the practice "
            "by its ODS identifier or as https://directory.spineservices.nhs.uk/STU3/Organization/"
            "<ODS code>.",
        )
    return None


def _restricted(birth: Birth) -> str:
    for element in birth.bundle.elements():
        for label in element.path("meta", "security"):
            system = label.text("system")
            confidentiality = system is None or system in CONFIDENTIALITY_SYSTEMS
            if confidentiality and label.text("code") in RESTRICTED_CONFIDENTIALITY:
                return "Y"
    return "N"


# -- the mapping --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FieldSource:
    """Where one field of the upload contract comes from in a birth notification bundle."""

    field: str
    element: str | None
    """The element, as errors name it; None when a bundle does not carry the field."""
    rule: str
    read: Callable[[Birth], str | None] | None = None


FIELD_SOURCES: tuple[FieldSource, ...] = (
    FieldSource(
        "notification_id",
        "Bundle.id",
        "The bundle's id (NEMS gives every message a UUID).",
        lambda birth: birth.bundle.id,
    ),
    FieldSource(
        "notification_type",
        "MessageHeader.extension(messageEventType)",
        "`new` (or no extension: the only type NEMS sends for this event) is NEW; `update` and `delete` "
        "are rejected (correct a bundle's record with an AMEND row naming its Bundle.id).",
        _notification_type,
    ),
    FieldSource("original_notification_id", None, "Not carried: a bundle is always a NEW notification."),
    FieldSource(
        "baby_nhs_number",
        "baby Patient.identifier",
        f"The identifier with system {NHS_NUMBER_SYSTEM}.",
        lambda birth: _nhs_number(birth.baby),
    ),
    FieldSource(
        "baby_date_of_birth",
        "baby Patient.birthDate",
        "A full FHIR date, YYYY-MM-DD.",
        lambda birth: _date(birth.baby.element.text("birthDate")),
    ),
    FieldSource(
        "baby_time_of_birth",
        "baby Patient.birthDate.extension(patient-birthTime)",
        "Its valueDateTime, as the time of day in the UK (a value with a UTC offset is converted); it must "
        "fall on the birthDate.",
        _birth_time,
    ),
    FieldSource("baby_sex", "baby Patient.gender", "male is 1, female 2, other 9, unknown X.", _sex),
    FieldSource(
        "birth_weight_grams",
        f"Observation {BIRTH_WEIGHT} (birth weight).valueQuantity",
        f"The Observation coded SNOMED CT {BIRTH_WEIGHT} whose subject is the baby; in g (or kg), rounded to "
        "the whole gram.",
        lambda birth: _quantity(birth, BIRTH_WEIGHT, "baby", _GRAMS, "in grams (g) or kilograms (kg)", ROUND_HALF_UP),
    ),
    FieldSource(
        "gestation_weeks",
        f"Observation {GESTATION} (gestation).valueQuantity",
        f"The Observation coded SNOMED CT {GESTATION} whose subject is the baby; in weeks (wk) or days (d), "
        "as completed weeks (39.6 weeks is 39).",
        lambda birth: _quantity(birth, GESTATION, "baby", _WEEKS, "in weeks (wk) or days (d)", ROUND_FLOOR),
    ),
    FieldSource(
        "birth_order", "baby Patient.multipleBirthInteger", "multipleBirthBoolean false counts as 1.", _birth_order
    ),
    FieldSource(
        "number_of_babies",
        f"Observation {NUMBER_OF_BIRTHS} (number of births).valueQuantity",
        f"The Observation coded SNOMED CT {NUMBER_OF_BIRTHS} whose subject is the mother; a whole number.",
        _number_of_babies,
    ),
    FieldSource(
        "live_birth",
        f"Observation {STILLBIRTH} (stillborn indicator).valueCodeableConcept",
        f"The Observation coded SNOMED CT {STILLBIRTH} whose subject is the baby: EMS-PDS-StillBornIndicator-1 "
        "code 1 (live) is Y; 2, 3 and 4 (still birth) are N, and the record is withheld.",
        _live_birth,
    ),
    FieldSource(
        "mother_nhs_number",
        "mother Patient.identifier",
        "As the baby's; NEMS may send a bundle without it (the mother's details incomplete at registration).",
        lambda birth: _nhs_number(birth.mother),
    ),
    FieldSource(
        "mother_given_name",
        "mother Patient.name.given",
        "Her official name (else her first name); several given names are joined by spaces.",
        _given_names,
    ),
    FieldSource("mother_family_name", "mother Patient.name.family", "Of the same name.", _family_name),
    FieldSource(
        "mother_date_of_birth",
        "mother Patient.birthDate",
        "A full FHIR date, YYYY-MM-DD.",
        lambda birth: _date(birth.mother.element.text("birthDate")),
    ),
    FieldSource(
        "address_line_1",
        "baby Patient.address.line",
        "The baby's home address (else the first not marked old): its lines, then its city and district "
        "unless already a line, in order; a fifth part and later ones are joined into address_line_4.",
        _address_line(0),
    ),
    FieldSource("address_line_2", "baby Patient.address.line", "The second part.", _address_line(1)),
    FieldSource("address_line_3", "baby Patient.address.line", "The third part.", _address_line(2)),
    FieldSource("address_line_4", "baby Patient.address.line", "The fourth part (and any after it).", _address_line(3)),
    FieldSource("postcode", "baby Patient.address.postalCode", "Of the same address.", _postcode),
    FieldSource("residence_la_code", None, "Not carried: the record is routed by its postcode."),
    FieldSource(
        "gp_practice_code",
        "mother Patient.generalPractitioner",
        f"The practice's ODS code: the reference's identifier (system {ODS_SYSTEM}), the ODS identifier of the "
        "Organization it references in the bundle, or the code ending a reference to "
        "https://directory.spineservices.nhs.uk/STU3/Organization/<ODS code>.",
        _gp_practice,
    ),
    FieldSource(
        "restricted",
        "meta.security",
        "Y when the Bundle or any resource in it carries the confidentiality label R or V (system "
        "http://hl7.org/fhir/v3/Confidentiality); otherwise N (see below).",
        _restricted,
    ),
    FieldSource(
        "sharing_objection",
        None,
        "Not carried, so N: a bundle cannot say that a parent objected to sharing. Do not send such a "
        "record as a bundle: send it as a CSV or JSON Lines row with sharing_objection Y (it is withheld).",
    ),
)
LOCATIONS: dict[str, str] = {source.field: source.element for source in FIELD_SOURCES if source.element}
"""Contract field -> the element errors name."""

assert tuple(source.field for source in FIELD_SOURCES) == RECORD_FIELDS, "every field of the contract, in order"

NOT_CARRIED_DEFAULTS = {"sharing_objection": "N"}


@dataclass
class Reading:
    """One bundle read as the contract's raw values, with what could not be read."""

    values: dict[str, str] = field(default_factory=dict)
    problems: list[RowProblem] = field(default_factory=list)
    """The notification cannot be read at all (a broken chain of references)."""
    field_problems: list[RowProblem] = field(default_factory=list)
    """Fields present but unreadable (named by contract field; each is that field's error)."""


def read_birth_notification(bundle: Bundle) -> Reading:
    """The record a birth notification bundle carries (the bundle has passed ``check_is_birth_notification``)."""
    reading = Reading()
    notification_id = bundle.id
    if notification_id:
        reading.values["notification_id"] = notification_id  # names the row even when it cannot be read
    birth = locate(bundle)
    if not isinstance(birth, Birth):
        reading.problems = birth
        return reading
    for source in FIELD_SOURCES:
        if source.read is None:
            default = NOT_CARRIED_DEFAULTS.get(source.field)
            if default is not None:
                reading.values[source.field] = default
            continue
        try:
            value = source.read(birth)
        except _Unreadable as unreadable:
            reading.field_problems.append(RowProblem(unreadable.code, unreadable.message, source.field))
            continue
        if value is not None and value.strip():
            reading.values[source.field] = value
    return reading
