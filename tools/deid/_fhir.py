"""FHIR de-identification: one bundle (R4 or R5) in, the same bundle with its identifying content replaced.

Works on the JSON, resource type by resource type, so it handles resources and extensions it has never
seen without needing their models:

- logical ids, ``fullUrl`` and every ``reference`` get keyed pseudonyms (``urn:uuid:`` stays a UUID;
  absolute server URLs become relative ``Type/id``, dropping the server's address);
- every ``identifier`` value (MRN, accession number, …) gets the pseudonym the DICOM side gives the same
  value, so DICOM and FHIR still match;
- person names (Patient, Practitioner, RelatedPerson, Person) and organisation / location names become
  pseudonyms; ``display`` texts of references are scrubbed of them;
- ``telecom``, ``address``, ``photo``, ``contact`` and narratives (``text.div``) are removed — they never
  inform an analysis and are where identifiers hide;
- every date, dateTime and instant moves by the case's shift, at its own precision, so ages and
  intervals hold;
- remaining free text (notes, comments, conclusions, ``valueString``) is scrubbed of every name,
  identifier and id replaced anywhere in the case, and its ISO dates are shifted.
"""

from __future__ import annotations

import copy
import re
from typing import Any

from okaflow.tools.deid._pseudonyms import Pseudonymizer

__all__ = ["deidentify_bundle"]

_PEOPLE = {"Patient", "Practitioner", "RelatedPerson", "Person"}
_PLACES = {"Organization", "Location", "HealthcareService"}
_DROP = {"telecom", "address", "photo", "contact"}
# Keys whose values are FHIR date/dateTime/instant wherever they appear (besides *Date, *DateTime, *Instant).
_DATE_KEYS = {
    "birthDate",
    "date",
    "start",
    "end",
    "issued",
    "lastUpdated",
    "started",
    "created",
    "recorded",
    "authoredOn",
    "timestamp",
    "time",
    "occurrenceDateTime",
    "sent",
    "received",
}
_NOT_TEXT = {"system", "code", "url", "profile", "resourceType", "status", "use", "unit", "contentType", "language"}
_REFERENCE = re.compile(
    r"^(?:(?P<base>https?://\S+?)/)?(?P<type>[A-Z][A-Za-z]+)/(?P<id>[A-Za-z0-9\-.]{1,64})(?P<rest>/_history/\S+)?$"
)
_OID = re.compile(r"^[0-2](?:\.[0-9]+)+$")
_UUID_URN = re.compile(r"^urn:uuid:(?P<uuid>[0-9a-fA-F-]{36})$")


def deidentify_bundle(bundle: dict[str, Any], pseudonyms: Pseudonymizer) -> dict[str, Any]:
    """A de-identified copy of ``bundle`` (a parsed FHIR Bundle); the input is not changed.

    Structured values are replaced first, over the whole bundle, so the free-text pass afterwards knows
    every name and identifier the bundle holds.
    """
    out = copy.deepcopy(bundle)
    entries = [e for e in out.get("entry", []) if isinstance(e, dict)]
    resources = [e["resource"] for e in entries if isinstance(e.get("resource"), dict)]
    for resource in resources:
        _structured(resource, pseudonyms)
    for entry in entries:
        if isinstance(entry.get("fullUrl"), str):
            entry["fullUrl"] = _reference(entry["fullUrl"], pseudonyms)
        entry.pop("response", None)  # a server's answer: locations and etags of the original resources
        request = entry.get("request")
        if isinstance(request, dict) and isinstance(request.get("url"), str):
            request["url"] = _reference(request["url"], pseudonyms)
    # The Bundle's own elements (id, timestamp, identifier), without walking the entries a second time.
    out["entry"], kept = [], out.get("entry")
    _structured(out, pseudonyms, top=True)
    if kept is not None:
        out["entry"] = kept
    else:
        del out["entry"]
    _text(out, pseudonyms, None)
    return out


def _structured(resource: dict[str, Any], pseudonyms: Pseudonymizer, *, top: bool = False, local: bool = False) -> None:
    """Ids, identifiers, names, removals and dates of one resource (and its contained resources).

    ``top``: the Bundle itself (its id is dropped); ``local``: a contained resource (its id is local to
    its container, ``#id``, and stays)."""
    rtype = resource.get("resourceType", "")
    if top:
        resource.pop("id", None)
        resource.pop("link", None)  # a server's paging links: its address and the original ids
    elif not local and isinstance(resource.get("id"), str):
        resource["id"] = pseudonyms.resource_id(rtype, resource["id"])
    resource.pop("text", None)
    meta = resource.get("meta")
    if isinstance(meta, dict):
        meta.pop("source", None)
        meta.pop("versionId", None)
    if rtype in _PEOPLE:
        for key in _DROP:
            resource.pop(key, None)
        names = resource.get("name")
        if isinstance(names, list):
            resource["name"] = [_human_name(n, rtype, pseudonyms) for n in names if isinstance(n, dict)]
    elif rtype in _PLACES:
        for key in _DROP:
            resource.pop(key, None)
        if isinstance(resource.get("name"), str):
            resource["name"] = pseudonyms.organisation(resource["name"], rtype)
        resource.pop("alias", None)
    for contained in resource.get("contained", []) or []:
        if isinstance(contained, dict):
            _structured(contained, pseudonyms, local=True)
    _values(resource, pseudonyms)


def _human_name(name: dict[str, Any], role: str, pseudonyms: Pseudonymizer) -> dict[str, Any]:
    family = str(name.get("family", ""))
    given = [str(g) for g in name.get("given", []) if g]
    if not family and not given and name.get("text"):
        words = str(name["text"]).split()
        family, given = words[-1], words[:-1]
    new_family, new_given = pseudonyms.person_name(family, given, role)
    kept = {k: v for k, v in name.items() if k in ("use",)}
    return {**kept, "family": new_family, "given": new_given}


def _values(node: Any, pseudonyms: Pseudonymizer, key: str | None = None) -> None:
    """Identifiers, references and dates anywhere below ``node`` (not into contained resources)."""
    if isinstance(node, list):
        for item in node:
            _values(item, pseudonyms, key)
        return
    if not isinstance(node, dict):
        return
    for k in list(node):
        value = node[k]
        if k == "contained":
            continue
        if k in _DROP and key is not None:
            del node[k]  # an Address or ContactPoint nested anywhere (e.g. an extension's value)
        elif k in ("valueAddress", "valueContactPoint", "valueHumanName"):
            del node[k]
        elif k == "identifier":
            for ident in value if isinstance(value, list) else [value]:
                if isinstance(ident, dict):
                    _identifier(ident, pseudonyms)
        elif k == "uid" and isinstance(value, str):  # ImagingStudy series and instance UIDs
            node[k] = pseudonyms.uid(value.removeprefix("urn:oid:"))
        elif k == "reference" and isinstance(value, str):
            node[k] = _reference(value, pseudonyms)
        elif isinstance(value, str) and _is_date_key(k):
            node[k] = pseudonyms.shift_fhir_date(value)
        else:
            _values(value, pseudonyms, k)


def _identifier(ident: dict[str, Any], pseudonyms: Pseudonymizer) -> None:
    value = ident.get("value")
    if isinstance(value, str):
        # A DICOM UID as an identifier (ImagingStudy: system urn:dicom:uid) gets the UID the DICOM side gets.
        oid = value.removeprefix("urn:oid:")
        if ident.get("system") == "urn:dicom:uid" or (oid != value and _OID.match(oid)):
            ident["value"] = f"urn:oid:{pseudonyms.uid(oid)}" if oid != value else pseudonyms.uid(value)
        else:
            ident["value"] = pseudonyms.identifier(value)
    assigner = ident.get("assigner")
    if isinstance(assigner, dict):
        assigner.pop("display", None)
    # Everything else an identifier holds (the assigner's reference, its period, its type) goes through the
    # same rules as any other element, so a reference keeps pointing at the pseudonymised resource.
    for key, item in ident.items():
        if key != "value" and isinstance(item, dict | list):
            _values(item, pseudonyms, key)


def _reference(value: str, pseudonyms: Pseudonymizer) -> str:
    m = _UUID_URN.match(value)
    if m:
        return f"urn:uuid:{pseudonyms.uuid(m['uuid'])}"
    m = _REFERENCE.match(value)
    if m:
        # A server's address names an institution: the pseudonymised reference is relative.
        return f"{m['type']}/{pseudonyms.resource_id(m['type'], m['id'])}"
    if value.startswith("#"):
        return value
    return pseudonyms.scrub_text(value)


def _is_date_key(key: str) -> bool:
    return key in _DATE_KEYS or key.endswith(("Date", "DateTime", "Instant"))


def _text(node: Any, pseudonyms: Pseudonymizer, key: str | None) -> None:
    """Scrub every free-text string (after all structured values are replaced)."""
    if isinstance(node, list):
        for i, item in enumerate(node):
            if isinstance(item, str):
                node[i] = pseudonyms.scrub_text(item) if key not in _NOT_TEXT else item
            else:
                _text(item, pseudonyms, key)
        return
    if not isinstance(node, dict):
        return
    for k, value in node.items():
        if isinstance(value, str):
            if k in _NOT_TEXT or k in ("id", "fullUrl", "reference") or _is_date_key(k):
                continue
            node[k] = pseudonyms.scrub_text(value)
        else:
            _text(value, pseudonyms, k)
