"""One fact per resource: demographics, conditions, medications, allergies, procedures, encounters,
imaging studies and diagnostic reports, read the same way from R4 and R5 JSON.

Where R4 and R5 differ, both spellings are read: ``medicationCodeableConcept``/``medicationReference``
(R4) and ``medication.concept``/``medication.reference`` (R5); ``performed[x]`` (R4) and
``occurrence[x]`` (R5); Encounter ``class`` as one Coding (R4) or a list (R5), ``period`` or
``actualPeriod``; ImagingStudy modalities as Coding (R4) or CodeableConcept (R5);
DiagnosticReport ``imagingStudy`` (R4) or ``study`` (R5).
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from okaflow.tools.fhir._bundle import ParsedBundle
from okaflow.tools.fhir._models import (
    AllergyFact,
    ConditionFact,
    DiagnosticReportFact,
    EncounterFact,
    Identifier,
    ImagingSeriesFact,
    ImagingStudyFact,
    MedicationFact,
    PatientFact,
    ProcedureFact,
)
from okaflow.tools.fhir._references import BundleEntry
from okaflow.tools.fhir._values import (
    JSONObject,
    as_list,
    choice_time,
    code_of,
    codings,
    concept_text,
    concepts_of,
    format_number,
    notes_text,
    period_text,
    quantity_text,
    reference_text,
)

__all__ = [
    "allergy_fact",
    "condition_fact",
    "encounter_fact",
    "imaging_study_fact",
    "medication_fact",
    "patient_fact",
    "procedure_fact",
    "report_fact",
]

DICOM_UID_SYSTEM = "urn:dicom:uid"


def patient_fact(entry: BundleEntry) -> PatientFact:
    """Demographics and identifiers (the identifiers are what DICOM PatientID is matched against)."""
    r = entry.resource
    names = [n for n in as_list(r.get("name")) if isinstance(n, dict)]
    name = next((n for n in names if n.get("use") == "official"), names[0] if names else None)
    text: str | None = None
    if name is not None:
        text = name.get("text") or " ".join([*as_list(name.get("given")), name.get("family") or ""]).strip()
    deceased = r.get("deceasedBoolean", r.get("deceasedDateTime"))
    identifiers = [
        Identifier(system=i.get("system"), value=i["value"], type=concept_text(i.get("type")))
        for i in as_list(r.get("identifier"))
        if isinstance(i, dict) and isinstance(i.get("value"), str)
    ]
    return PatientFact(
        id=entry.key,
        name=text or None,
        gender=r.get("gender"),
        birth_date=r.get("birthDate"),
        deceased=deceased,
        identifiers=identifiers,
    )


def condition_fact(entry: BundleEntry) -> ConditionFact:
    r = entry.resource
    return ConditionFact(
        id=entry.key,
        text=concept_text(r.get("code")) or "Condition (no code)",
        coding=codings(r.get("code")),
        clinical_status=code_of(r.get("clinicalStatus")),
        verification_status=code_of(r.get("verificationStatus")),
        onset=choice_time(r, "onset"),
        recorded=r.get("recordedDate"),
        body_site=next(iter(concepts_of(r.get("bodySite"))), None),
        note=notes_text(r.get("note")),
    )


def _dosage_text(dosage: Any) -> str | None:
    if not isinstance(dosage, dict):
        return None
    if isinstance(dosage.get("text"), str) and dosage["text"].strip():
        return str(dosage["text"]).strip()
    rates = [d for d in as_list(dosage.get("doseAndRate")) if isinstance(d, dict)]
    dose = quantity_text(dosage.get("dose")) or next(
        (q for d in rates if (q := quantity_text(d.get("doseQuantity")))), None
    )
    parts = [p for p in (f"dose {dose}" if dose else None, concept_text(dosage.get("route"))) if p]
    timing = dosage.get("timing")
    if isinstance(timing, dict):
        repeat: JSONObject = timing["repeat"] if isinstance(timing.get("repeat"), dict) else {}
        if (code := concept_text(timing.get("code"))) is not None:
            parts.append(code)
        elif repeat.get("frequency") and repeat.get("period") is not None and repeat.get("periodUnit"):
            period = format_number(float(repeat["period"]))
            every = repeat["periodUnit"] if period == "1" else f"{period} {repeat['periodUnit']}"
            parts.append(f"{repeat['frequency']}× per {every}")
    if dosage.get("asNeededBoolean") is True:
        parts.append("as needed")
    return ", ".join(parts) or None


def medication_fact(entry: BundleEntry, bundle: ParsedBundle) -> MedicationFact:
    """MedicationRequest, MedicationStatement or MedicationAdministration, R4 or R5."""
    r = entry.resource
    holder: JSONObject = r["medication"] if isinstance(r.get("medication"), dict) else {}
    concept = r.get("medicationCodeableConcept") or holder.get("concept")
    reference = r.get("medicationReference") or holder.get("reference")
    text, coding = concept_text(concept), codings(concept)
    if not text and isinstance(reference, dict):
        target = bundle.resolve(reference, entry)
        if target is not None and target.resource_type == "Medication":
            text, coding = concept_text(target.resource.get("code")), codings(target.resource.get("code"))
        text = text or reference.get("display") or f"{reference_text(reference) or 'Medication'} (not in bundle)"
    rtype = entry.resource_type
    if rtype == "MedicationRequest":
        dosages, date = r.get("dosageInstruction"), r.get("authoredOn")
    elif rtype == "MedicationAdministration":
        dosages = r.get("dosage")
        date = choice_time(r, "effective") or choice_time(r, "occurence")  # R5 spells it "occurence"
    else:
        dosages, date = r.get("dosage"), choice_time(r, "effective") or r.get("dateAsserted")
    dosage = "; ".join(t for d in as_list(dosages) if (t := _dosage_text(d))) or None
    return MedicationFact(
        id=entry.key,
        text=text or "Medication (no code)",
        coding=coding,
        status=r.get("status") if isinstance(r.get("status"), str) else code_of(r.get("status")),
        dosage=dosage,
        date=date,
        resource_type=rtype,
    )


def allergy_fact(entry: BundleEntry) -> AllergyFact:
    r = entry.resource
    reactions: list[str] = []
    substance = concept_text(r.get("code"))
    for reaction in as_list(r.get("reaction")):
        if not isinstance(reaction, dict):
            continue
        substance = substance or concept_text(reaction.get("substance"))
        signs = ", ".join(concepts_of(reaction.get("manifestation")))
        if signs:
            reactions.append(f"{signs} ({reaction['severity']})" if reaction.get("severity") else signs)
    return AllergyFact(
        id=entry.key,
        substance=substance or "unknown substance",
        clinical_status=code_of(r.get("clinicalStatus")),
        criticality=r.get("criticality"),
        reactions=reactions,
        recorded=r.get("recordedDate"),
    )


def procedure_fact(entry: BundleEntry) -> ProcedureFact:
    r = entry.resource
    return ProcedureFact(
        id=entry.key,
        text=concept_text(r.get("code")) or "Procedure (no code)",
        coding=codings(r.get("code")),
        status=r.get("status"),
        performed=choice_time(r, "performed") or choice_time(r, "occurrence"),
    )


def _reason_texts(values: Any, entry: BundleEntry, bundle: ParsedBundle) -> list[str]:
    """Texts of reasons given as CodeableConcepts, References or R5 CodeableReferences."""
    texts: list[str | None] = []
    for value in as_list(values):
        if not isinstance(value, dict):
            continue
        if not isinstance(value.get("reference"), str | dict):
            texts.append(concept_text(value))  # a CodeableConcept, or a CodeableReference with a concept only
            continue
        # An R4 Reference is the value itself; an R5 CodeableReference holds one under "reference".
        reference = value["reference"] if isinstance(value["reference"], dict) else value
        target = bundle.resolve(reference, entry)
        resolved = concept_text(target.resource.get("code")) if target is not None else None
        texts.append(resolved or concept_text(value.get("concept")) or reference_text(reference))
    return [t for t in texts if t]


def encounter_fact(entry: BundleEntry, bundle: ParsedBundle) -> EncounterFact:
    r = entry.resource
    classes = as_list(r.get("class"))  # R4: one Coding; R5: a list of CodeableConcepts
    period = r.get("period") or r.get("actualPeriod") or {}
    reasons = _reason_texts(r.get("reasonCode"), entry, bundle) + _reason_texts(r.get("reasonReference"), entry, bundle)
    for reason in as_list(r.get("reason")):  # R5: [{use, value: [CodeableReference]}]
        if isinstance(reason, dict):
            reasons += _reason_texts(reason.get("value"), entry, bundle)
    text = (
        next(iter(concepts_of(r.get("type"))), None)
        or next(iter(concepts_of(r.get("serviceType"))), None)
        or next(iter(concepts_of(classes)), None)
        or "Encounter"
    )
    return EncounterFact(
        id=entry.key,
        text=text,
        encounter_class=code_of(classes[0]) if classes else None,
        status=r.get("status"),
        start=period.get("start") if isinstance(period, dict) else None,
        end=period.get("end") if isinstance(period, dict) else None,
        reasons=list(dict.fromkeys(reasons)),
    )


def study_uid(resource: JSONObject) -> str | None:
    """The DICOM Study Instance UID from ``identifier`` (system ``urn:dicom:uid``, ``urn:oid:`` stripped)."""
    for ident in as_list(resource.get("identifier")):
        if isinstance(ident, dict) and ident.get("system") == DICOM_UID_SYSTEM and ident.get("value"):
            return str(ident["value"]).removeprefix("urn:oid:")
    return None


def imaging_study_fact(entry: BundleEntry, bundle: ParsedBundle) -> ImagingStudyFact:
    r = entry.resource
    series: list[ImagingSeriesFact] = []
    for item in as_list(r.get("series")):
        if not isinstance(item, dict) or not isinstance(item.get("uid"), str):
            continue
        instances = [i["uid"] for i in as_list(item.get("instance")) if isinstance(i, dict) and i.get("uid")]
        count = item.get("numberOfInstances")
        series.append(
            ImagingSeriesFact(
                uid=item["uid"],
                modality=code_of(item.get("modality")),
                body_site=concept_text(item.get("bodySite")),
                description=item.get("description"),
                number_of_instances=count if isinstance(count, int) else None,
                instance_uids=instances,
            )
        )
    modalities = [m for m in (code_of(x) for x in as_list(r.get("modality"))) if m]
    modalities += [s.modality for s in series if s.modality and s.modality not in modalities]
    reasons = _reason_texts(r.get("reasonCode"), entry, bundle) + _reason_texts(r.get("reason"), entry, bundle)
    reasons += _reason_texts(r.get("reasonReference"), entry, bundle)
    return ImagingStudyFact(
        id=entry.key,
        study_uid=study_uid(r),
        started=r.get("started"),
        status=r.get("status"),
        description=r.get("description"),
        modalities=list(dict.fromkeys(modalities)),
        series=series,
        reason="; ".join(dict.fromkeys(reasons)) or None,
    )


def _plain_text(attachments: Any) -> str | None:
    texts: list[str] = []
    for attachment in as_list(attachments):
        if not isinstance(attachment, dict) or not str(attachment.get("contentType", "")).startswith("text/plain"):
            continue
        try:
            texts.append(base64.b64decode(str(attachment.get("data", "")), validate=True).decode("utf-8").strip())
        except (binascii.Error, UnicodeDecodeError):
            continue  # a malformed attachment is not the report's text; the conclusion still is
    return "\n\n".join(t for t in texts if t) or None


def _target_keys(references: Any, entry: BundleEntry, bundle: ParsedBundle, rtype: str) -> list[str]:
    keys: list[str] = []
    for reference in as_list(references):
        target = bundle.resolve(reference, entry) if isinstance(reference, dict) else None
        if target is not None and target.resource_type == rtype:
            keys.append(target.key)
    return keys


def report_fact(entry: BundleEntry, bundle: ParsedBundle) -> DiagnosticReportFact:
    r = entry.resource
    conclusion = r.get("conclusion") or "; ".join(concepts_of(r.get("conclusionCode"))) or None
    return DiagnosticReportFact(
        id=entry.key,
        text=concept_text(r.get("code")) or "Diagnostic report (no code)",
        status=r.get("status"),
        category=next((c for c in (code_of(x) for x in as_list(r.get("category"))) if c), None),
        effective=choice_time(r, "effective") or period_text(r.get("effectivePeriod")),
        issued=r.get("issued"),
        conclusion=conclusion,
        presented_text=_plain_text(r.get("presentedForm")),
        study_ids=_target_keys(r.get("imagingStudy") or r.get("study"), entry, bundle, "ImagingStudy"),
        result_ids=_target_keys(r.get("result"), entry, bundle, "Observation"),
    )
