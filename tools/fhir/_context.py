"""From a parsed bundle to one patient's :class:`PatientContext`.

Choosing the patient: ``patient_id`` may be the logical id (``p1``), ``Patient/p1``, the entry's
``fullUrl``, or one of the Patient's identifier values (e.g. the DICOM PatientID); without it the bundle
must hold exactly one Patient.

Which facts belong to the patient: a resource is kept when its ``subject`` (``patient`` for
AllergyIntolerance) resolves to the chosen Patient. Then:

- resolves to another Patient in the bundle: left out (another patient's record);
- resolves to a Group, Device or Location: left out, with a warning;
- no subject at all: kept with a warning when the bundle has one Patient, else left out with a warning;
- points outside the bundle, but its ``Patient/<id>`` names the chosen patient's logical id (a different
  server base, say): kept, with a warning;
- points at a Patient (or an unknown type, such as an unresolved ``urn:uuid``) that is not in the bundle:
  whose record this is cannot be told, so ``strict`` raises :class:`FHIRReferenceError` naming the JSON
  path; with ``strict=False`` the resource is left out with a warning.

Other unresolved references (a Practitioner, a Medication on another server) never raise: the loader
lists them in ``warnings`` and facts fall back to the reference's display text.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from okaflow._errors import FHIRParseError, FHIRReferenceError
from okaflow.tools.fhir._bundle import BundleSource, ParsedBundle, load_bundle
from okaflow.tools.fhir._facts import (
    allergy_fact,
    condition_fact,
    encounter_fact,
    imaging_study_fact,
    medication_fact,
    patient_fact,
    procedure_fact,
    report_fact,
)
from okaflow.tools.fhir._models import FHIRVersion, PatientContext
from okaflow.tools.fhir._observations import observation_fact
from okaflow.tools.fhir._references import BundleEntry, reference_target_type

__all__ = ["build_patient_context", "read_patient_context"]

_PATIENT_TAIL = re.compile(r"(?:^|/)Patient/(?P<id>[A-Za-z0-9\-.]{1,64})(?:/_history/[^/]+)?$")

_MEDICATION_TYPES = ("MedicationRequest", "MedicationStatement", "MedicationAdministration")


def read_patient_context(
    source: BundleSource,
    *,
    patient_id: str | None = None,
    version: FHIRVersion | None = None,
    strict: bool = True,
) -> PatientContext:
    """Load a bundle and build one patient's context: :func:`load_bundle` then :func:`build_patient_context`.

    Args:
        source: a path, JSON text, bytes, or a parsed dict.
        patient_id: which Patient, when the bundle holds several (id, ``Patient/id``, fullUrl or identifier).
        version: ``"R4"``, ``"R4B"`` or ``"R5"`` to skip release detection.
        strict: raise on invalid entries and on facts whose Patient is missing (True), or skip them with a
            warning (False).

    Returns:
        The patient context; its ``warnings`` list everything skipped or unresolved.

    Raises:
        FHIRParseError: the bundle cannot be read or validated, or holds no Patient.
        FHIRReferenceError: several Patients and no ``patient_id``, a ``patient_id`` that matches none,
            or (strict) a fact whose Patient is not in the bundle.
    """
    return build_patient_context(load_bundle(source, version=version, strict=strict), patient_id=patient_id)


def build_patient_context(bundle: ParsedBundle, *, patient_id: str | None = None) -> PatientContext:
    """Build the typed context of one patient from a parsed bundle.

    Args:
        bundle: the result of :func:`load_bundle` (its ``strict`` setting applies here too).
        patient_id: which Patient, when the bundle holds several (see the module docstring).

    Returns:
        Demographics and every fact whose subject is that patient, with the bundle's warnings and this
        step's own.

    Raises:
        FHIRParseError: the bundle holds no Patient.
        FHIRReferenceError: the patient is ambiguous or not found, or (strict) a fact names a missing Patient.
    """
    patient = _choose_patient(bundle, patient_id)
    warnings = list(bundle.warnings)
    belongs = _SubjectFilter(bundle, patient, warnings)

    def facts(types: tuple[str, ...], make: Callable[[BundleEntry], Any], field: str = "subject") -> list[Any]:
        return [make(e) for e in bundle.of_type(*types) if belongs(e, field)]

    return PatientContext(
        fhir_version=bundle.version,
        source=bundle.source,
        patient=patient_fact(patient),
        conditions=facts(("Condition",), condition_fact),
        medications=facts(_MEDICATION_TYPES, lambda e: medication_fact(e, bundle)),
        allergies=facts(("AllergyIntolerance",), allergy_fact, "patient"),
        procedures=facts(("Procedure",), procedure_fact),
        encounters=facts(("Encounter",), lambda e: encounter_fact(e, bundle)),
        observations=facts(("Observation",), lambda e: observation_fact(e.resource, e.key, warnings)),
        imaging_studies=facts(("ImagingStudy",), lambda e: imaging_study_fact(e, bundle)),
        reports=facts(("DiagnosticReport",), lambda e: report_fact(e, bundle)),
        warnings=warnings,
    )


def _names_of(entry: BundleEntry) -> tuple[set[str], set[str]]:
    """(exact names: id, Type/id, fullUrl; identifier values) a caller may use for a Patient."""
    exact = {entry.key, *(x for x in (entry.id, entry.full_url) if x)}
    if entry.id:
        exact.add(f"Patient/{entry.id}")
    identifiers = {i["value"] for i in entry.resource.get("identifier") or [] if isinstance(i, dict) and i.get("value")}
    return exact, identifiers


def _choose_patient(bundle: ParsedBundle, patient_id: str | None) -> BundleEntry:
    patients = bundle.patients
    listed = ", ".join(p.key for p in patients[:10]) + (" …" if len(patients) > 10 else "")
    where = ", ".join(f"entry[{p.index}]" for p in patients[:10])
    if not patients:
        raise FHIRParseError(
            "the bundle holds no Patient resource",
            source=bundle.source,
            location="entry",
            hint="include the Patient (e.g. fetch Patient/<id>/$everything rather than a plain search)",
        )
    if patient_id is None:
        if len(patients) == 1:
            return patients[0]
        raise FHIRReferenceError(
            f"the bundle holds {len(patients)} Patients ({listed}); which one is meant is ambiguous",
            source=bundle.source,
            location=where,
            hint=f"pass patient_id= one of: {listed}",
        )
    exact = [p for p in patients if patient_id in _names_of(p)[0]]
    matches = exact or [p for p in patients if patient_id in _names_of(p)[1]]
    if len(matches) == 1:
        return matches[0]
    found = "matches no Patient" if not matches else f"matches {len(matches)} Patients by identifier"
    raise FHIRReferenceError(
        f"patient_id {patient_id!r} {found} (Patients here: {listed})",
        source=bundle.source,
        location=where,
        hint="pass a logical id, Patient/<id>, the fullUrl, or an identifier value unique to one Patient",
    )


class _SubjectFilter:
    """Decides, per resource, whether it is about the chosen patient (rules in the module docstring)."""

    def __init__(self, bundle: ParsedBundle, patient: BundleEntry, warnings: list[str]) -> None:
        self._bundle = bundle
        self._patient = patient
        self._warnings = warnings
        self._single = len(bundle.patients) == 1

    def __call__(self, entry: BundleEntry, field: str) -> bool:
        reference = entry.resource.get(field)
        if not isinstance(reference, dict):
            if self._single:
                self._warnings.append(f"{entry.key} has no {field}; attributed to the only patient")
                return True
            self._warnings.append(f"{entry.key} has no {field} and the bundle has several Patients; left out")
            return False
        target = self._bundle.resolve(reference, entry)
        if target is not None:
            if target.entry is self._patient and not target.contained:
                return True
            if target.resource_type != "Patient":
                self._warnings.append(f"{entry.key} is about {target.key}, not a patient; left out")
            elif target.contained:
                self._warnings.append(f"{entry.key} is about a contained Patient {target.key}; left out")
            return False
        raw = reference.get("reference")
        text = raw if isinstance(raw, str) else ""
        tail = _PATIENT_TAIL.search(text)
        if tail is not None and tail.group("id") == self._patient.id:
            self._warnings.append(
                f"{entry.key}.{field} {text!r} is not in the bundle; matched to {self._patient.key} by logical id"
            )
            return True
        target_type = reference_target_type(reference)
        if target_type not in (None, "Patient"):
            self._warnings.append(f"{entry.key} is about {target_type} {text!r} (not in the bundle); left out")
            return False
        if text:
            return self._missing_patient(entry, field, "reference", text)
        return self._missing_patient(entry, field, "identifier", str(reference.get("identifier")))

    def _missing_patient(self, entry: BundleEntry, field: str, part: str, text: str) -> bool:
        message = f"{entry.key}.{field} points at {text!r}, which is not in the bundle"
        if self._bundle.strict:
            raise FHIRReferenceError(
                message + "; whose record this is cannot be told",
                source=self._bundle.source,
                location=entry.path(f"{field}.{part}"),
                hint="add that Patient to the bundle or fix the reference; load with strict=False to leave "
                "such resources out (each is then listed in warnings)",
            )
        self._warnings.append(message + "; left out")
        return False
