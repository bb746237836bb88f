"""Bundle entries and the reference rules that connect them.

A reference resolves, in this order, to:

- ``#id`` — a resource in the referring resource's ``contained`` list (``#`` alone: the container);
- an exact ``fullUrl`` match (``urn:uuid:…``, ``urn:oid:…`` or an absolute URL), ignoring ``/_history/n``;
- relative ``Type/id`` — first the referrer's own server base + ``Type/id`` as a fullUrl (the FHIR rule),
  then any entry whose resource is that type with that logical id (bundles often carry no fullUrls);
- absolute ``…/Type/id`` that matches no fullUrl — the entry with that ``Type/id`` only when that entry has
  no absolute fullUrl of its own (so two servers' ``Patient/1`` are never confused);
- conditional ``Type?identifier=system|value`` (Synthea's form for practitioners and organisations) — the one
  resource of that type carrying that identifier;
- a Reference with only ``identifier`` — the one resource (of ``type``, if given) carrying it.

Anything else is *external*: normal in real bundles (a Practitioner kept on another server). The loader
lists external references as warnings; whether one is an error is the caller's decision (the patient
context raises for a missing Patient, see ``_context``).
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

from okaflow.tools.fhir._values import JSONObject, as_list

__all__ = ["BundleEntry", "ReferenceIndex", "ResolvedReference", "iter_references", "reference_target_type"]

_ID = r"[A-Za-z0-9\-.]{1,64}"
_HISTORY = re.compile(rf"/_history/{_ID}$")
_RELATIVE = re.compile(rf"^(?P<type>[A-Z][A-Za-z]+)/(?P<id>{_ID})$")
_ABSOLUTE = re.compile(rf"^(?P<base>https?://.+)/(?P<type>[A-Z][A-Za-z]+)/(?P<id>{_ID})$")
_CONDITIONAL = re.compile(r"^(?P<type>[A-Z][A-Za-z]+)\?(?P<query>.+)$")


@dataclass(frozen=True, slots=True)
class BundleEntry:
    """One validated resource of a bundle.

    Attributes:
        index: position in ``Bundle.entry`` (what JSON paths in errors and warnings count).
        resource: the resource JSON exactly as written (validated; dates and decimals untouched).
        model: the fhir.resources object (``fhir.resources.*`` for R5, ``fhir.resources.R4B.*`` for R4/R4B).
        full_url: ``entry.fullUrl`` if any.
        search_mode: ``entry.search.mode`` (``match``, ``include``, ``outcome``) if any.
        key: ``Type/id``; a resource without an id uses the uuid of a ``urn:uuid`` fullUrl, else
            ``Type/entry-<index>``. Fact and evidence ids are built from it.
    """

    index: int
    resource: JSONObject
    model: Any = field(repr=False, compare=False)
    full_url: str | None
    search_mode: str | None
    key: str

    @property
    def resource_type(self) -> str:
        return str(self.resource["resourceType"])

    @property
    def id(self) -> str | None:
        value = self.resource.get("id")
        return value if isinstance(value, str) else None

    def path(self, suffix: str = "") -> str:
        """JSON path of this entry's resource (or of ``suffix`` inside it) within the bundle."""
        base = f"entry[{self.index}].resource"
        return f"{base}.{suffix}" if suffix else base


@dataclass(frozen=True, slots=True)
class ResolvedReference:
    """What a reference points at: an entry's resource, or a resource contained in one."""

    entry: BundleEntry
    resource: JSONObject
    contained: bool = False

    @property
    def resource_type(self) -> str:
        return str(self.resource.get("resourceType", ""))

    @property
    def key(self) -> str:
        if self.contained:
            return f"{self.entry.key}#{self.resource.get('id', '')}"
        return self.entry.key


def reference_target_type(reference: JSONObject) -> str | None:
    """The resource type a Reference names, from ``type`` or from the reference string's shape."""
    if isinstance(reference.get("type"), str):
        return str(reference["type"])
    text = reference.get("reference")
    if not isinstance(text, str):
        return None
    text = _HISTORY.sub("", text)
    for pattern in (_RELATIVE, _ABSOLUTE, _CONDITIONAL):
        if match := pattern.match(text):
            return match.group("type")
    return None


def _identifier_keys(resource: JSONObject) -> list[tuple[str | None, str]]:
    keys: list[tuple[str | None, str]] = []
    for ident in as_list(resource.get("identifier")):
        if isinstance(ident, dict) and isinstance(ident.get("value"), str):
            keys.append((ident.get("system"), ident["value"]))
            keys.append((None, ident["value"]))
    return keys


class ReferenceIndex:
    """Looks references up in one bundle's entries (built once by the loader)."""

    def __init__(self, entries: tuple[BundleEntry, ...]) -> None:
        self._by_url: dict[str, BundleEntry] = {}
        self._by_key: dict[str, BundleEntry] = {}
        self._by_identifier: dict[tuple[str, str | None, str], list[BundleEntry]] = defaultdict(list)
        for entry in entries:
            if entry.full_url:
                self._by_url.setdefault(entry.full_url, entry)
                self._by_url.setdefault(_HISTORY.sub("", entry.full_url), entry)
            if entry.id:
                self._by_key.setdefault(f"{entry.resource_type}/{entry.id}", entry)
            for system, value in _identifier_keys(entry.resource):
                self._by_identifier[(entry.resource_type, system, value)].append(entry)

    def resolve(self, reference: JSONObject | str, referrer: BundleEntry | None) -> ResolvedReference | None:
        """The resource a Reference (or reference string) points at, or None when it is external.

        Args:
            reference: a FHIR Reference object or its ``reference`` string.
            referrer: the entry that holds the reference (needed for ``#id`` and for relative URLs).
        """
        if isinstance(reference, dict):
            text = reference.get("reference")
            if not isinstance(text, str) or not text:
                ident = reference.get("identifier")
                if isinstance(ident, dict) and isinstance(ident.get("value"), str):
                    return self._by_identifier_of(reference.get("type"), ident.get("system"), ident["value"])
                return None
        else:
            text = reference
        if text.startswith("#"):
            return self._contained(text[1:], referrer)
        text = _HISTORY.sub("", text)
        if (entry := self._by_url.get(text)) is not None:
            return ResolvedReference(entry, entry.resource)
        if match := _RELATIVE.match(text):
            return self._relative(text, referrer)
        if match := _ABSOLUTE.match(text):
            entry = self._by_key.get(f"{match.group('type')}/{match.group('id')}")
            if entry is not None and not (entry.full_url or "").startswith(("http://", "https://")):
                return ResolvedReference(entry, entry.resource)
            return None
        if match := _CONDITIONAL.match(text):
            query = parse_qs(match.group("query"))
            if set(query) == {"identifier"} and len(query["identifier"]) == 1:
                system, _, value = query["identifier"][0].rpartition("|")
                return self._by_identifier_of(match.group("type"), system or None, value)
        return None

    def _contained(self, local_id: str, referrer: BundleEntry | None) -> ResolvedReference | None:
        if referrer is None:
            return None
        if not local_id:
            return ResolvedReference(referrer, referrer.resource)
        for item in as_list(referrer.resource.get("contained")):
            if isinstance(item, dict) and item.get("id") == local_id:
                return ResolvedReference(referrer, item, contained=True)
        return None

    def _relative(self, text: str, referrer: BundleEntry | None) -> ResolvedReference | None:
        base = _ABSOLUTE.match(referrer.full_url or "") if referrer is not None else None
        if base is not None and (entry := self._by_url.get(f"{base.group('base')}/{text}")) is not None:
            return ResolvedReference(entry, entry.resource)
        entry = self._by_key.get(text)
        return ResolvedReference(entry, entry.resource) if entry is not None else None

    def _by_identifier_of(self, rtype: Any, system: str | None, value: str) -> ResolvedReference | None:
        if isinstance(rtype, str):
            matches = self._by_identifier.get((rtype, system, value), [])
        else:
            matches = [e for (_, s, v), es in self._by_identifier.items() if (s, v) == (system, value) for e in es]
        unique = {id(e): e for e in matches}
        if len(unique) != 1:
            return None
        entry = next(iter(unique.values()))
        return ResolvedReference(entry, entry.resource)


def iter_references(value: Any, path: str) -> list[tuple[str, JSONObject]]:
    """Every Reference object inside a resource's JSON, with its JSON path (contained ones included)."""
    found: list[tuple[str, JSONObject]] = []
    if isinstance(value, dict):
        if isinstance(value.get("reference"), str):
            found.append((path, value))
        for key, item in value.items():
            found.extend(iter_references(item, f"{path}.{key}" if path else key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found.extend(iter_references(item, f"{path}[{i}]"))
    return found
