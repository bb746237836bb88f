"""Which FHIR release a bundle is written in, decided from what the JSON itself says.

The rule, in order (the first that gives an answer wins):

1. the caller's ``version=`` argument;
2. a declaration: a ``meta.profile`` canonical with a version suffix (``…|4.0.1`` → R4, ``|4.3.0`` → R4B,
   ``|5.0.0`` → R5), a US Core profile (US Core is built on R4), or a CapabilityStatement entry's
   ``fhirVersion``;
3. shapes that exist in one release only (:data:`_MARKERS`), e.g. ``medicationCodeableConcept`` (R4) vs
   ``medication.concept`` (R5), ``Encounter.class`` as one Coding (R4) vs a list (R5),
   ``Media`` (R4) vs ``ImagingSelection`` (R5); when only one release's shapes occur;
4. otherwise (no shapes, or both) the loader validates every entry with the R5 models and then the R4B
   models and keeps the first release under which every entry validates (see ``_bundle``).

R4 and R4B share their JSON shapes, so step 3 reports "R4" (the release servers actually run) and both
are parsed with ``fhir.resources.R4B``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any

from okaflow.tools.fhir._models import FHIRVersion
from okaflow.tools.fhir._values import JSONObject, as_list

__all__ = ["declared_version", "shape_versions"]

_PROFILE_SUFFIX = re.compile(r"\|(\d+)\.(\d+)(?:\.\d+)?(?:-[\w.]+)?$")
_FHIR_VERSION_PREFIX: dict[str, FHIRVersion] = {"4.0": "R4", "4.1": "R4B", "4.3": "R4B", "5.0": "R5"}

# MedicationStatement is in both: R5 ballots called it MedicationUsage, the published R5 did not.
_R4_ONLY_TYPES = frozenset({"Media", "DeviceUseStatement", "MedicinalProduct"})
_R5_ONLY_TYPES = frozenset({"DeviceUsage", "ImagingSelection", "ActorDefinition", "Requirements"})
_MEDICATION_TYPES = frozenset({"MedicationRequest", "MedicationStatement", "MedicationAdministration"})


def _version_of_fhir_version(text: str) -> FHIRVersion | None:
    return _FHIR_VERSION_PREFIX.get(".".join(text.split(".")[:2]))


def declared_version(bundle: JSONObject, resources: Iterable[JSONObject]) -> tuple[FHIRVersion, str] | None:
    """The release the bundle declares, with the reason, or None when it declares nothing."""
    for where, item in [("Bundle", bundle), *((r.get("resourceType", "?"), r) for r in resources)]:
        if item.get("resourceType") == "CapabilityStatement" and isinstance(item.get("fhirVersion"), str):
            found = _version_of_fhir_version(item["fhirVersion"])
            if found:
                return found, f"CapabilityStatement.fhirVersion is {item['fhirVersion']}"
        meta = item.get("meta")
        for profile in as_list(meta.get("profile") if isinstance(meta, dict) else None):
            if not isinstance(profile, str):
                continue
            if match := _PROFILE_SUFFIX.search(profile):
                found = _version_of_fhir_version(f"{match.group(1)}.{match.group(2)}")
                if found:
                    return found, f"{where}.meta.profile {profile!r} names FHIR {found}"
            if "hl7.org/fhir/us/core/" in profile:
                return "R4", f"{where}.meta.profile {profile!r} is US Core, which is built on R4"
    return None


def _is_coding(value: Any) -> bool:
    return isinstance(value, dict) and "coding" not in value and ("code" in value or "system" in value)


def _is_concept(value: Any) -> bool:
    return isinstance(value, dict) and ("coding" in value or "text" in value)


def _medication_r4(r: JSONObject) -> bool:
    return "medicationCodeableConcept" in r or "medicationReference" in r


def _medication_r5(r: JSONObject) -> bool:
    med = r.get("medication")
    return isinstance(med, dict) and ("concept" in med or "reference" in med)


def _encounter_r4(r: JSONObject) -> bool:
    return (
        _is_coding(r.get("class"))
        or "period" in r
        or "reasonCode" in r
        or "hospitalization" in r
        or "classHistory" in r
    )


def _encounter_r5(r: JSONObject) -> bool:
    return isinstance(r.get("class"), list) or "actualPeriod" in r or "admission" in r


def _imaging_r4(r: JSONObject) -> bool:
    series = [s for s in as_list(r.get("series")) if isinstance(s, dict)]
    return (
        any(_is_coding(m) for m in as_list(r.get("modality")))
        or any(_is_coding(s.get("modality")) for s in series)
        or "procedureCode" in r
        or "reasonCode" in r
    )


def _imaging_r5(r: JSONObject) -> bool:
    series = [s for s in as_list(r.get("series")) if isinstance(s, dict)]
    return any(_is_concept(m) for m in as_list(r.get("modality"))) or any(
        _is_concept(s.get("modality")) for s in series
    )


def _manifestations(r: JSONObject) -> list[Any]:
    return [
        m
        for reaction in as_list(r.get("reaction"))
        if isinstance(reaction, dict)
        for m in as_list(reaction.get("manifestation"))
    ]


# (resource types, test, release, what): the test is True when a resource uses a shape of that release only.
_Marker = tuple[frozenset[str], Callable[[JSONObject], bool], FHIRVersion, str]
_MARKERS: tuple[_Marker, ...] = (
    (_MEDICATION_TYPES, _medication_r4, "R4", "medicationCodeableConcept/medicationReference"),
    (_MEDICATION_TYPES, _medication_r5, "R5", "medication as a CodeableReference"),
    (frozenset({"Encounter"}), _encounter_r4, "R4", "class as one Coding, period, reasonCode or hospitalization"),
    (frozenset({"Encounter"}), _encounter_r5, "R5", "class as a list, actualPeriod or admission"),
    (frozenset({"ImagingStudy"}), _imaging_r4, "R4", "modality as Coding, procedureCode or reasonCode"),
    (frozenset({"ImagingStudy"}), _imaging_r5, "R5", "modality as CodeableConcept"),
    (frozenset({"DiagnosticReport"}), lambda r: "imagingStudy" in r, "R4", "imagingStudy"),
    (frozenset({"DiagnosticReport"}), lambda r: "study" in r, "R5", "study"),
    (frozenset({"Procedure"}), lambda r: any(k.startswith("performed") for k in r), "R4", "performed[x]"),
    (frozenset({"Procedure"}), lambda r: any(k.startswith("occurrence") for k in r), "R5", "occurrence[x]"),
    (
        frozenset({"MedicationAdministration"}),
        lambda r: any(k.startswith("occurence") for k in r),
        "R5",
        "occurence[x]",
    ),
    (
        frozenset({"AllergyIntolerance"}),
        lambda r: any(_is_concept(m) for m in _manifestations(r)),
        "R4",
        "reaction.manifestation as CodeableConcept",
    ),
    (
        frozenset({"AllergyIntolerance"}),
        lambda r: any(isinstance(m, dict) and "concept" in m for m in _manifestations(r)),
        "R5",
        "reaction.manifestation as CodeableReference",
    ),
)


def shape_versions(resources: Iterable[JSONObject]) -> dict[FHIRVersion, str]:
    """Each release whose version-only shapes occur, with the first example found (for the reason text)."""
    found: dict[FHIRVersion, str] = {}
    for resource in resources:
        rtype = resource.get("resourceType")
        if not isinstance(rtype, str):
            continue
        if rtype in _R4_ONLY_TYPES:
            found.setdefault("R4", f"resource type {rtype} exists in R4 only")
        elif rtype in _R5_ONLY_TYPES:
            found.setdefault("R5", f"resource type {rtype} exists in R5 only")
        for types, test, version, what in _MARKERS:
            if version not in found and rtype in types and test(resource):
                found[version] = f"{rtype}/{resource.get('id', '?')} has {what} ({version} only)"
        if len(found) == 2:
            break
    return found
