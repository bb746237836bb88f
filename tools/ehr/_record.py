"""One patient's record from a FHIR server, as a Bundle the case loader accepts.

``Patient/{id}/$everything`` when the CapabilityStatement declares it; otherwise the Patient read plus
one search per clinical resource type the server supports (by ``patient``, else ``subject``), with the
``_include`` s the server lists for that type (a report's results, a prescription's medication). Every
page is followed; entries are merged into one ``searchset`` Bundle, one per ``Type/id``.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from okaflow._errors import ClinicalResponseError, FHIRParseError
from okaflow.tools.ehr._client import FHIRClient, JSONObject
from okaflow.tools.fhir import FHIRVersion, ParsedBundle, dumps_fhir_json, load_bundle

__all__ = ["RECORD_RESOURCE_TYPES", "PatientRecord", "RecordStrategy", "fetch_patient_record"]

RecordStrategy = Literal["auto", "everything", "search"]

#: What a case reads from a record (see okaflow.tools.fhir's facts), searched when $everything is not offered.
RECORD_RESOURCE_TYPES = (
    "Condition",
    "Observation",
    "DiagnosticReport",
    "ImagingStudy",
    "Procedure",
    "MedicationRequest",
    "MedicationStatement",
    "AllergyIntolerance",
    "Encounter",
)
# Targets worth pulling in with a type's search, asked for only where the server lists them.
_INCLUDES = {
    "DiagnosticReport": ("DiagnosticReport:result",),
    "MedicationRequest": ("MedicationRequest:medication",),
    "MedicationStatement": ("MedicationStatement:medication",),
}


@dataclass(frozen=True)
class PatientRecord:
    """A patient's record as one ``searchset`` Bundle, and how it was obtained.

    Attributes:
        patient_id: The server's id of the Patient.
        bundle: The Bundle (JSON, decimals as ``Decimal``): the Patient first, then every other entry.
        version: The server's FHIR release.
        strategy: ``"everything"`` (``Patient/$everything``) or ``"search"`` (one search per type).
        base_url: The FHIR base it came from.
        requests: HTTP requests it took.
        warnings: Resource types that could not be searched, and why.
    """

    patient_id: str
    bundle: JSONObject
    version: FHIRVersion
    strategy: Literal["everything", "search"]
    base_url: str
    requests: int
    warnings: tuple[str, ...] = field(default=())

    def parse(self, *, strict: bool = True) -> ParsedBundle:
        """The Bundle validated with fhir.resources for the server's release (as ``load_bundle``)."""
        return load_bundle(self.bundle, version=self.version, strict=strict)

    def to_json(self, *, indent: int | None = 2) -> str:
        """The Bundle as JSON text, decimals written exactly as the server sent them (``1.40`` stays ``1.40``)."""
        return dumps_fhir_json(self.bundle, indent=indent)

    def resources(self, resource_type: str) -> list[JSONObject]:
        """The record's resources of one type."""
        return [
            e["resource"]
            for e in self.bundle.get("entry", [])
            if isinstance(e.get("resource"), dict) and e["resource"].get("resourceType") == resource_type
        ]


def fetch_patient_record(
    client: FHIRClient,
    patient_id: str,
    *,
    strategy: RecordStrategy = "auto",
    resource_types: Sequence[str] = RECORD_RESOURCE_TYPES,
    validate: bool = True,
) -> PatientRecord:
    """Pull one patient's record from a FHIR server.

    Args:
        client: The server.
        patient_id: The Patient's id on that server (find it from an MRN with ``client.find_patient_ids``).
        strategy: ``"auto"`` uses ``$everything`` where the CapabilityStatement declares it, else searches;
            ``"everything"`` or ``"search"`` force one.
        resource_types: What the search strategy asks for (types the server does not support are skipped,
            with a warning).
        validate: Check the result with fhir.resources for the server's release before returning it.

    Returns:
        The record; ``PatientRecord.bundle`` is what :meth:`okaflow.Case.from_objects` takes.

    Raises:
        PatientNotFoundError: the server has no such Patient.
        ClinicalSystemError: the server is unreachable, refuses the credentials, or answers nonsense.
    """
    version = client.fhir_version
    before = client.requests
    use_everything = strategy == "everything" or (
        strategy == "auto" and client.supports_operation("Patient", "everything")
    )
    warnings: list[str] = []
    if use_everything:
        entries = client.everything(patient_id)
        patients = [e for e in entries if _key(e) == f"Patient/{patient_id}"]
        if not patients:
            raise ClinicalResponseError(
                f"Patient/{patient_id}/$everything holds no Patient/{patient_id}",
                system="FHIR",
                url=f"{client.base_url}/Patient/{patient_id}/$everything",
                hint="use strategy='search'",
            )
        entries = patients[:1] + [e for e in entries if e is not patients[0]]
    else:
        patient = client.read("Patient", patient_id)
        entries = [{"fullUrl": f"{client.base_url}/Patient/{patient_id}", "resource": patient}]
        for resource_type in resource_types:
            entries += _search_type(client, resource_type, patient_id, warnings)
    bundle = {
        "resourceType": "Bundle",
        "id": str(uuid.uuid4()),
        "type": "searchset",
        "entry": _deduplicated(entries),
    }
    record = PatientRecord(
        patient_id=patient_id,
        bundle=bundle,
        version=version,
        strategy="everything" if use_everything else "search",
        base_url=client.base_url,
        requests=client.requests - before,
        warnings=tuple(warnings),
    )
    if validate:
        try:
            record.parse()
        except FHIRParseError as exc:
            raise ClinicalResponseError(
                f"the record of Patient/{patient_id} from {client.base_url} fails the FHIR {version} model at "
                f"{exc.location}: {exc.reason}",
                system="FHIR",
                url=client.base_url,
                hint="the server sent an invalid resource; pass validate=False and load it with strict=False to "
                "skip invalid entries",
            ) from exc
    return record


def _search_type(client: FHIRClient, resource_type: str, patient_id: str, warnings: list[str]) -> list[JSONObject]:
    capability = client.resource_capability(resource_type)
    if capability is None:
        warnings.append(f"{resource_type}: not offered by the server, not searched")
        return []
    declared = {p.get("name") for p in capability.get("searchParam") or [] if isinstance(p, dict)}
    params: dict[str, str | list[str]]
    if "patient" in declared or not declared:
        params = {"patient": patient_id}
    elif "subject" in declared:
        params = {"subject": f"Patient/{patient_id}"}
    else:
        warnings.append(f"{resource_type}: the server offers no patient or subject search, not searched")
        return []
    offered = set(capability.get("searchInclude") or [])
    includes = [i for i in _INCLUDES.get(resource_type, ()) if i in offered or "*" in offered]
    if includes:
        params["_include"] = includes
    return client.search(resource_type, params)


def _key(entry: JSONObject) -> str | None:
    resource = entry.get("resource")
    if not isinstance(resource, dict) or "id" not in resource:
        return None
    return f"{resource.get('resourceType')}/{resource['id']}"


def _deduplicated(entries: list[JSONObject]) -> list[JSONObject]:
    """One entry per ``Type/id`` (the first, so a match beats a later include); entries without id stay."""
    seen: set[str] = set()
    out = []
    for entry in entries:
        key = _key(entry)
        if key is not None:
            if key in seen:
                continue
            seen.add(key)
        out.append(entry)
    return out
