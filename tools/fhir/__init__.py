"""FHIR bundles in, a typed patient context out.

::

    from okaflow.tools.fhir import read_patient_context

    ctx = read_patient_context("bundle.json")           # R4, R4B or R5; detected
    for row in ctx.evidence():
        print(row.id, row.summary)

``load_bundle`` validates every entry with fhir.resources and resolves references;
``build_patient_context`` picks one patient and reads their facts; ``patient_evidence`` turns the facts
into citable evidence rows. Errors are :class:`okaflow.FHIRParseError` / :class:`okaflow.FHIRReferenceError`
naming the file, the JSON path and the fix.
"""

from okaflow.tools.fhir._bundle import BundleSource, ParsedBundle, dumps_fhir_json, load_bundle, read_fhir_json
from okaflow.tools.fhir._context import build_patient_context, read_patient_context
from okaflow.tools.fhir._evidence import patient_evidence
from okaflow.tools.fhir._models import (
    AllergyFact,
    Coding,
    ConditionFact,
    DiagnosticReportFact,
    EncounterFact,
    FHIRVersion,
    Identifier,
    ImagingSeriesFact,
    ImagingStudyFact,
    MedicationFact,
    ObservationFact,
    PatientContext,
    PatientFact,
    ProcedureFact,
)
from okaflow.tools.fhir._observations import compute_interpretation
from okaflow.tools.fhir._references import BundleEntry, ResolvedReference

__all__ = [
    "AllergyFact",
    "BundleEntry",
    "BundleSource",
    "Coding",
    "ConditionFact",
    "DiagnosticReportFact",
    "EncounterFact",
    "FHIRVersion",
    "Identifier",
    "ImagingSeriesFact",
    "ImagingStudyFact",
    "MedicationFact",
    "ObservationFact",
    "ParsedBundle",
    "PatientContext",
    "PatientFact",
    "ProcedureFact",
    "ResolvedReference",
    "build_patient_context",
    "compute_interpretation",
    "dumps_fhir_json",
    "load_bundle",
    "patient_evidence",
    "read_fhir_json",
    "read_patient_context",
]
