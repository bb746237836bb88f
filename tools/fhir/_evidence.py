"""The evidence table of a patient context: one citable row per fact.

A summary is the one line a reader sees and the text a verify step checks a model's claim against, so
every number and unit in it is printed exactly as the fact holds it (``1.4 mg/dL``, never rounded), and
flags say whether they came from the record or were computed from the range.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from okaflow._types import Evidence, EvidenceKind
from okaflow.tools.fhir._models import (
    AllergyFact,
    ConditionFact,
    DiagnosticReportFact,
    EncounterFact,
    ImagingStudyFact,
    MedicationFact,
    ObservationFact,
    PatientContext,
    PatientFact,
    ProcedureFact,
)
from okaflow.tools.fhir._observations import describe_value

__all__ = ["patient_evidence"]

# Statuses worth no mention: the default state of a finished record. "amended"/"corrected" are shown:
# the value changed after it was first reported.
_QUIET_STATUSES = frozenset({"final", "available"})


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _join(parts: Iterable[str | None], sep: str = ", ") -> str:
    return sep.join(p for p in parts if p)


def patient_summary(p: PatientFact) -> str:
    idents = _join(f"{i.value} ({i.type or i.system})" if (i.type or i.system) else i.value for i in p.identifiers)
    deceased = f"deceased {p.deceased}" if isinstance(p.deceased, str) else "deceased" if p.deceased else None
    head = _join([p.name or "name not recorded", p.gender, f"born {p.birth_date}" if p.birth_date else None, deceased])
    return f"Patient {head}" + (f"; identifiers: {idents}" if idents else "")


def condition_summary(c: ConditionFact) -> str:
    status = _join([c.clinical_status, c.verification_status])
    when = _join([f"onset {c.onset}" if c.onset else None, f"recorded {c.recorded}" if c.recorded else None])
    tail = _join(
        [status, when, f"site {c.body_site}" if c.body_site else None, f"note: {c.note}" if c.note else None], "; "
    )
    return f"Condition: {c.text}" + (f" — {tail}" if tail else "")


def medication_summary(m: MedicationFact) -> str:
    status = f"{m.status} ({m.resource_type})" if m.status else m.resource_type
    tail = _join([m.dosage, status, m.date], "; ")
    return f"Medication: {m.text} — {tail}"


def allergy_summary(a: AllergyFact) -> str:
    status = _join([a.clinical_status, f"criticality {a.criticality}" if a.criticality else None])
    reactions = f"reactions: {', '.join(a.reactions)}" if a.reactions else None
    tail = _join([status, reactions, f"recorded {a.recorded}" if a.recorded else None], "; ")
    return f"Allergy: {a.substance}" + (f" — {tail}" if tail else "")


def procedure_summary(p: ProcedureFact) -> str:
    tail = _join([p.status, p.performed])
    return f"Procedure: {p.text}" + (f" — {tail}" if tail else "")


def encounter_summary(e: EncounterFact) -> str:
    kind = _join([e.encounter_class, e.status])
    span = f"{e.start} to {e.end}" if e.start and e.end else e.start or (f"until {e.end}" if e.end else None)
    reasons = f"reason: {'; '.join(e.reasons)}" if e.reasons else None
    return _join([f"Encounter: {e.text}" + (f" ({kind})" if kind else ""), span, reasons], "; ")


def observation_summary(o: ObservationFact) -> str:
    if o.components and o.value is None and o.value_text is None:
        body = f"{o.text}: " + "; ".join(f"{c.text} {describe_value(c)}" for c in o.components)
    else:
        # A textual value reads as "label: text"; a number as "Creatinine 1.4 mg/dL".
        body = f"{o.text}{' ' if o.value is not None else ': '}{describe_value(o)}"
        if o.components:
            body += " [" + "; ".join(f"{c.text} {describe_value(c)}" for c in o.components) + "]"
    if o.status and o.status not in _QUIET_STATUSES:
        body += f" [{o.status}]"
    if o.effective:
        body += f" on {o.effective}" + (f" to {o.effective_end}" if o.effective_end else "")
    if o.note:
        body += f"; note: {o.note}"
    return body


def imaging_summary(s: ImagingStudyFact) -> str:
    n_instances = sum(x.number_of_instances or len(x.instance_uids) for x in s.series)
    counts = f"{len(s.series)} series, {n_instances} instance{'s' if n_instances != 1 else ''}"
    head = f"ImagingStudy: {s.description or 'imaging study'} ({_join([', '.join(s.modalities), counts], '; ')})"
    return _join(
        [
            head,
            f"started {s.started}" if s.started else None,
            s.status if s.status and s.status not in _QUIET_STATUSES else None,
            f"study UID {s.study_uid}" if s.study_uid else "no study UID",
            f"reason: {s.reason}" if s.reason else None,
        ],
        "; ",
    )


def report_summary(r: DiagnosticReportFact) -> str:
    meta = _join([r.status, r.category])
    head = f"DiagnosticReport: {r.text}" + (f" ({meta})" if meta else "")
    when = r.effective or r.issued
    body = r.conclusion or r.presented_text
    text = head + (f" {when}" if when else "")
    return text + (f": {_one_line(body)}" if body else ": no conclusion recorded")


def _row(kind: EvidenceKind, fact: Any, summary: str, time: str | None, source: str | None) -> Evidence:
    return Evidence(id=fact.id, kind=kind, summary=_one_line(summary), source=source, time=time, data=fact.model_dump())


def patient_evidence(ctx: PatientContext) -> list[Evidence]:
    """One Evidence row per fact of the context, patient first, then by kind in record order.

    Args:
        ctx: the patient context.

    Returns:
        Rows with ``id`` = the fact id (``ResourceType/id``), ``kind`` per fact type, a one-line
        ``summary`` carrying the key values verbatim, ``time`` = the fact's date, ``data`` = the fact dumped.
    """
    src = ctx.source
    rows: list[Evidence] = []
    if ctx.patient is not None:
        rows.append(_row("patient", ctx.patient, patient_summary(ctx.patient), ctx.patient.birth_date, src))
    rows += [_row("condition", c, condition_summary(c), c.onset or c.recorded, src) for c in ctx.conditions]
    rows += [_row("medication", m, medication_summary(m), m.date, src) for m in ctx.medications]
    rows += [_row("allergy", a, allergy_summary(a), a.recorded, src) for a in ctx.allergies]
    rows += [_row("procedure", p, procedure_summary(p), p.performed, src) for p in ctx.procedures]
    rows += [_row("encounter", e, encounter_summary(e), e.start, src) for e in ctx.encounters]
    rows += [_row("observation", o, observation_summary(o), o.effective, src) for o in ctx.observations]
    rows += [_row("imaging_study", s, imaging_summary(s), s.started, src) for s in ctx.imaging_studies]
    rows += [_row("diagnostic_report", r, report_summary(r), r.effective or r.issued, src) for r in ctx.reports]
    return rows
