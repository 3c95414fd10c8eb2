"""FHIR (STU3) bundles as read from an upload, in XML or JSON, with references resolved inside the bundle.

One small element model serves both forms, so the mapping to the upload record (``nems``) is written once.
XML is parsed by defusedxml with every document type declaration refused: a DTD is where entities
(a "billion laughs") and external entities (a file or URL fetched while parsing) are declared, FHIR XML
never has one, and refusing it at ``<!DOCTYPE`` means nothing is ever expanded or fetched. The caller
bounds the size of what is parsed (``reader``), so memory stays small whatever the file says.
"""

from __future__ import annotations

import json
import re
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from xml.etree.ElementTree import Element as XmlNode
from xml.etree.ElementTree import ParseError

from birthnotify.domain.problems import FileRejected
from birthnotify.domain.record import ErrorCode

FHIR_NAMESPACE = "http://hl7.org/fhir"
_NS = f"{{{FHIR_NAMESPACE}}}"
_RESTFUL_REFERENCE = re.compile(r"(?:^|/)([A-Z][A-Za-z]{1,63})/([A-Za-z0-9.-]{1,64})(?:/_history/[^/]+)?$")


class Element(ABC):
    """One FHIR element: its primitive ``value`` (if it has one) and its child elements by name."""

    @property
    @abstractmethod
    def value(self) -> str | None:
        """The primitive value as written (numbers and booleans as their JSON text)."""

    @abstractmethod
    def all(self, name: str) -> list[Element]:
        """Every child element of this name, in order."""

    @abstractmethod
    def attribute(self, name: str) -> str | None:
        """A plain property that is not an element (an extension's ``url``)."""

    @abstractmethod
    def as_resource(self) -> tuple[str, Element] | None:
        """For an entry's ``resource``: its resource type and the resource."""

    def first(self, name: str) -> Element | None:
        found = self.all(name)
        return found[0] if found else None

    def text(self, name: str) -> str | None:
        """The value of the first child element of this name."""
        child = self.first(name)
        return child.value if child is not None else None

    def path(self, *names: str) -> list[Element]:
        """Every element reached by following ``names`` from here (``path("code", "coding")``)."""
        found: list[Element] = [self]
        for name in names:
            found = [child for element in found for child in element.all(name)]
        return found

    def extensions(self, url: str) -> list[Element]:
        return [extension for extension in self.all("extension") if extension.attribute("url") == url]


class _Xml(Element):
    __slots__ = ("_node",)

    def __init__(self, node: XmlNode) -> None:
        self._node = node

    @property
    def value(self) -> str | None:
        return self._node.get("value")

    def all(self, name: str) -> list[Element]:
        tag = _NS + name
        return [_Xml(child) for child in self._node if child.tag == tag]

    def attribute(self, name: str) -> str | None:
        return self._node.get(name)

    def as_resource(self) -> tuple[str, Element] | None:
        for child in self._node:
            if isinstance(child.tag, str) and child.tag.startswith(_NS):
                return child.tag[len(_NS) :], _Xml(child)
        return None


class _Json(Element):
    """A JSON element: an object, or a primitive with its ``_name`` companion (id and extensions)."""

    __slots__ = ("_data", "_companion")

    def __init__(self, data: Any, companion: Any = None) -> None:
        self._data = data
        self._companion = companion if isinstance(companion, dict) else None

    @property
    def value(self) -> str | None:
        data = self._data
        if isinstance(data, bool):
            return "true" if data else "false"
        return data if isinstance(data, str) else None  # numbers are parsed as their text

    def all(self, name: str) -> list[Element]:
        container = self._data if isinstance(self._data, dict) else self._companion
        if container is None:
            return []
        values, companions = _as_list(container.get(name)), _as_list(container.get(f"_{name}"))
        return [
            _Json(values[i] if i < len(values) else None, companions[i] if i < len(companions) else None)
            for i in range(max(len(values), len(companions)))
            if (i < len(values) and values[i] is not None) or (i < len(companions) and companions[i] is not None)
        ]

    def attribute(self, name: str) -> str | None:
        value = self._data.get(name) if isinstance(self._data, dict) else None
        return value if isinstance(value, str) else None

    def as_resource(self) -> tuple[str, Element] | None:
        kind = self._data.get("resourceType") if isinstance(self._data, dict) else None
        return (kind, self) if isinstance(kind, str) else None


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


@dataclass(frozen=True)
class Resource:
    type: str
    element: Element
    full_url: str | None
    entry: int
    """1-based position of its entry in the bundle (for messages only: resources are found by reference)."""

    @property
    def id(self) -> str | None:
        return self.element.text("id")


class Bundle:
    """A parsed bundle: its resources, and references between them resolved within it."""

    def __init__(self, root: Element) -> None:
        self.root = root
        self.resources: list[Resource] = []
        self.repeated_full_urls: list[str] = []
        by_url: dict[str, Resource] = {}
        by_type_id: dict[tuple[str, str], Resource] = {}
        for position, entry in enumerate(root.all("entry"), start=1):
            wrapper = entry.first("resource")
            found = wrapper.as_resource() if wrapper is not None else None
            if found is None:
                continue
            resource = Resource(found[0], found[1], entry.text("fullUrl"), position)
            self.resources.append(resource)
            if resource.full_url:
                if resource.full_url in by_url:
                    self.repeated_full_urls.append(resource.full_url)
                by_url.setdefault(resource.full_url, resource)
            if resource.id:
                by_type_id.setdefault((resource.type, resource.id), resource)
        self._by_url = by_url
        self._by_type_id = by_type_id

    @property
    def id(self) -> str | None:
        return self.root.text("id")

    @property
    def type(self) -> str | None:
        return self.root.text("type")

    def of_type(self, resource_type: str) -> list[Resource]:
        return [resource for resource in self.resources if resource.type == resource_type]

    def resolve(self, reference: Element | None) -> Resource | None:
        """The resource a Reference element points to: by fullUrl, else by ``[base/]Type/id``."""
        target = reference.text("reference") if reference is not None else None
        if not target:
            return None
        if target in self._by_url:
            return self._by_url[target]
        match = _RESTFUL_REFERENCE.search(target)
        return self._by_type_id.get((match[1], match[2])) if match else None

    def elements(self) -> Iterator[Element]:
        """The bundle itself and every resource in it."""
        yield self.root
        for resource in self.resources:
            yield resource.element


def parse_xml_bundle(data: bytes) -> Bundle:
    """A FHIR XML bundle; FileRejected if it is not well-formed, declares a DTD, or is not a FHIR Bundle."""
    # Imported here: only a bundle upload needs it, and a CSV file's cold start need not pay for it.
    from defusedxml import DefusedXmlException
    from defusedxml.ElementTree import fromstring as parse_xml

    try:
        root = parse_xml(data, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except DefusedXmlException:
        raise FileRejected(
            ErrorCode.FILE_XML_DTD_FORBIDDEN,
            "The XML has a document type declaration (<!DOCTYPE ...>), where entities and external references are "
            "declared; it is refused and nothing in it was read. FHIR XML never needs one: send the bundle as its "
            "system exports it, without a DOCTYPE.",
        ) from None
    except ParseError as exc:
        line, column = getattr(exc, "position", (0, 0))
        raise FileRejected(
            ErrorCode.FILE_NOT_XML,
            f"The file is not well-formed XML (line {line}, column {column + 1}): export the bundle again.",
        ) from None
    if root.tag != f"{_NS}Bundle":
        where = "outside the FHIR namespace" if root.tag.rsplit("}", 1)[-1] == "Bundle" else "not a Bundle"
        raise FileRejected(
            ErrorCode.FILE_NOT_BIRTH_NOTIFICATION,
            f"The document's root element is {where}: a file must be one FHIR Bundle "
            f'(<Bundle xmlns="{FHIR_NAMESPACE}">).',
        )
    return Bundle(_Xml(root))


class _RepeatedKey(ValueError):
    pass


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _RepeatedKey(key)
        result[key] = value
    return result


def _no_constant(name: str) -> Any:
    raise ValueError(name)


def parse_json_bundle(data: bytes) -> Bundle:
    """A FHIR JSON bundle; FileRejected if it is not one JSON object (each key once) that is a Bundle."""
    try:
        # Numbers are kept as their text: FHIR decimals are exact, and no huge integer is ever converted.
        parsed = json.loads(
            data.decode("utf-8-sig"),
            object_pairs_hook=_object,
            parse_float=str,
            parse_int=str,
            parse_constant=_no_constant,
        )
    except _RepeatedKey:
        raise FileRejected(
            ErrorCode.FILE_NOT_JSON,
            "A JSON object in the file gives the same key twice, so which "
            "value counts is unclear: export the bundle again.",
        ) from None
    except json.JSONDecodeError as exc:
        if exc.msg == "Extra data":
            raise FileRejected(
                ErrorCode.FILE_NOT_JSON,
                f"The file holds more than one JSON value (the next starts at "
                f"line {exc.lineno}): a .json file is one FHIR bundle; rows as JSON Lines go in a "
                ".jsonl file.",
            ) from None
        raise FileRejected(
            ErrorCode.FILE_NOT_JSON,
            f"The file is not valid JSON ({exc.msg} at line {exc.lineno}, "
            f"column {exc.colno}): export the bundle again.",
        ) from None
    except (ValueError, RecursionError):
        raise FileRejected(
            ErrorCode.FILE_NOT_JSON,
            "The file is not valid JSON (NaN or Infinity, or nested too deeply): export the bundle again.",
        ) from None
    if not isinstance(parsed, dict) or parsed.get("resourceType") != "Bundle":
        row = isinstance(parsed, dict) and "notification_id" in parsed
        hint = " (it looks like a row of the upload contract: rows as JSON Lines go in a .jsonl file)" if row else ""
        raise FileRejected(
            ErrorCode.FILE_NOT_BIRTH_NOTIFICATION,
            f'The file is not a FHIR Bundle: a .json file must be one JSON object with "resourceType": "Bundle"{hint}.',
        )
    return Bundle(_Json(parsed))
