"""Assemble the interleaved report from the agent's final state.

Reading order: task, run notices, clinical context (tables of facts), each image followed by the
images derived from it, lab trends as plots, the workflow's sections of claims, verification, and
the citations. okaflow-written blocks cite their facts; claims keep their backend's provenance.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from okaflow._types import Evidence, Provenance
from okaflow._version import __version__
from okaflow.agents._nodes import backend_of
from okaflow.agents._state import OKAState, RunContext
from okaflow.tools.fhir import PatientContext
from okaflow.tools.reporting import (
    ArtifactRef,
    Block,
    CitationsBlock,
    FigureBlock,
    GeneratedImageBlock,
    HeadingBlock,
    ImageBlock,
    NoticeBlock,
    Report,
    TableBlock,
    TextBlock,
    VerificationFlag,
    block_cites,
    plot_observation_trend,
)

if TYPE_CHECKING:
    from okaflow.agents._nodes import AgentConfig

__all__ = ["assemble_report", "prepare_report_ahead", "trend_section"]

_TRENDS = "trend_section"  # RunContext.prepared's name for the trend figures
_SECTION_TITLES = {
    "findings": "Findings",
    "comparison": "Comparison",
    "impression": "Impression",
    "answer": "Answer",
}


def assemble_report(state: OKAState, ctx: RunContext, config: AgentConfig) -> Report:
    """Build the :class:`Report` for a finished analysis."""
    case = ctx.case
    evidence = {row["id"]: Evidence.model_validate(row) for row in state.get("evidence", [])}
    blocks: list[Block] = [HeadingBlock(text="Task", level=2), TextBlock(text=state.get("task", ""))]
    warnings = state.get("warnings", [])
    if warnings:
        blocks.append(NoticeBlock(level="warning", text="Run warnings: " + " | ".join(warnings)))
    blocks += _context_blocks(case.patient)
    blocks += _image_blocks(state, ctx)
    blocks += trend_section(ctx)
    backend = backend_of(config, ctx)
    blocks += _claim_blocks(state, config, backend.is_model)
    cited: list[str] = []
    for b in blocks:
        for i in block_cites(b):
            if i in evidence and i not in cited:
                cited.append(i)
    blocks.append(CitationsBlock(entries=[evidence[i] for i in cited]))
    return Report(
        title=f"{config.workflow.title}: {case.title or case.id}",
        case_id=case.id,
        workflow=config.workflow.name,
        created=ctx.started_at,
        okaflow_version=__version__,
        backend=backend.name,
        model_id=backend.model_id,
        model_configured=backend.is_model,
        blocks=blocks,
        evidence=[evidence[i] for i in cited],
    )


def _context_blocks(p: PatientContext) -> list[Block]:
    blocks: list[Block] = [HeadingBlock(text="Clinical context", level=2)]
    if p.patient:
        pt = p.patient
        rows = [["Gender", pt.gender or "—"], ["Birth date", pt.birth_date or "—"]]
        blocks.append(TableBlock(title="Patient", columns=["Item", "Value"], rows=rows, cites=[pt.id]))
    active = p.active_conditions
    if active:
        blocks.append(
            TableBlock(
                title="Active problems",
                columns=["Problem", "Status", "Onset"],
                rows=[[c.text, c.clinical_status or "—", c.onset or "—"] for c in active],
                cites=[c.id for c in active],
            )
        )
    if p.medications:
        blocks.append(
            TableBlock(
                title="Medications",
                columns=["Medication", "Status", "Dosage"],
                rows=[[m.text, m.status or "—", m.dosage or "—"] for m in p.medications],
                cites=[m.id for m in p.medications],
            )
        )
    if p.allergies:
        blocks.append(
            TableBlock(
                title="Allergies",
                columns=["Substance", "Criticality", "Reactions"],
                rows=[[a.substance, a.criticality or "—", ", ".join(a.reactions) or "—"] for a in p.allergies],
                cites=[a.id for a in p.allergies],
            )
        )
    abnormal = [o for o in p.observations if o.is_abnormal]
    if abnormal:
        blocks.append(
            TableBlock(
                title="Results outside their reference range",
                columns=["Observation", "Value", "Reference", "Flag", "Date"],
                rows=[
                    [
                        o.text,
                        f"{o.value:g} {o.unit or ''}".strip() if o.value is not None else (o.value_text or "—"),
                        _range(o.reference_low, o.reference_high, o.reference_text),
                        o.interpretation + (" (computed)" if o.interpretation_computed else "")
                        if o.interpretation
                        else "—",
                        o.effective or "—",
                    ]
                    for o in abnormal
                ],
                cites=[o.id for o in abnormal],
            )
        )
    return blocks


def _range(low: float | None, high: float | None, text: str | None) -> str:
    if low is not None and high is not None:
        return f"{low:g}–{high:g}"
    if low is not None:
        return f"≥ {low:g}"
    if high is not None:
        return f"≤ {high:g}"
    return text or "—"


def _image_blocks(state: OKAState, ctx: RunContext) -> list[Block]:
    """Each source image, immediately followed by every image derived from it (interleaved)."""
    shown = state.get("model_images", [])
    if not shown:
        return []
    generated = list(state.get("generated", []))
    blocks: list[Block] = [HeadingBlock(text="Images", level=2)]
    for m in shown:
        img = ctx.case.image(m["evidence_id"])
        when = f", study date {img.study_date}" if img.study_date else ""
        role = m.get("role", "current")
        size = m.get("series_size", 1)
        of_series = f", middle of {size} images in its series" if size > 1 else ""
        caption = f"{role.capitalize()} {img.modality.value} image {img.id}{when}{of_series} — as shown to the model"
        blocks.append(ImageBlock(image=ArtifactRef.model_validate(m["artifact"]), caption=caption, evidence_id=img.id))
        for g in [g for g in generated if g["derived_from"] and g["derived_from"][-1] == img.id]:
            generated.remove(g)
            blocks.append(_generated_block(g))
    blocks += [_generated_block(g) for g in generated]
    return blocks


def _generated_block(g: dict[str, Any]) -> GeneratedImageBlock:
    return GeneratedImageBlock(
        image=ArtifactRef.model_validate(g["artifact"]),
        caption=g["caption"],
        label=g["label"],
        task=g["task"],
        derived_from=g["derived_from"],
        provenance=Provenance.model_validate(g["provenance"]),
        ai_generated=g["ai_generated"],
        evidence_id=g["evidence_id"],
    )


def prepare_report_ahead(ctx: RunContext) -> None:
    """Start drawing what the report takes from the record alone (the trend figures) while the model answers."""
    ctx.prepare_ahead(_TRENDS, lambda: trend_section(ctx))


def trend_section(ctx: RunContext) -> list[Block]:
    """The report's lab-trend figures, drawn once per run: by the report, or ahead of it."""
    return ctx.prepared(_TRENDS, lambda: _trend_blocks(ctx.case.patient, ctx))


def _trend_blocks(p: PatientContext, ctx: RunContext) -> list[Block]:
    series = p.observation_series(min_points=2)
    blocks: list[Block] = []
    for points in series.values():
        units = {o.unit for o in points}
        if len(units) > 1:
            continue  # mixed units would draw a false trend; the table above still lists the values
        try:
            plot = plot_observation_trend(points)
        except ValueError as exc:  # values no axis can show: said where the plot would be
            blocks.append(
                TextBlock(text=f"{points[-1].text}: no trend plot, because {exc}.", cites=[o.id for o in points])
            )
            continue
        ref = ctx.artifacts.put_image(plot)
        caption = f"{points[-1].text} over time ({len(points)} values, {points[0].effective} to {points[-1].effective})"
        blocks.append(FigureBlock(image=ref, caption=caption, cites=[o.id for o in points]))
    return [HeadingBlock(text="Laboratory and vital-sign trends", level=2), *blocks] if blocks else []


def _claim_blocks(state: OKAState, config: AgentConfig, is_model: bool) -> list[Block]:
    claims = state.get("claims", [])
    author = "model" if is_model else "evidence-only"
    blocks: list[Block] = []
    for section in config.workflow.sections:
        mine = [c for c in claims if c["section"] == section]
        blocks.append(HeadingBlock(text=_SECTION_TITLES.get(section, section.title()), level=2))
        if not mine:
            blocks.append(NoticeBlock(level="info", text=f"The analysis wrote nothing for {section}."))
        for c in mine:
            blocks.append(
                TextBlock(
                    text=c["text"],
                    author=author,
                    provenance=Provenance.model_validate(c["provenance"]),
                    cites=c["cites"],
                    flags=[VerificationFlag.model_validate(f) for f in c["flags"]],
                    section=section,
                )
            )
    flagged = sum(1 for c in claims if c["flags"])
    blocks.append(HeadingBlock(text="Verification", level=2))
    blocks.append(
        TextBlock(
            text=f"{len(claims)} claims checked against their cited evidence; {flagged} flagged as unsupported."
            + ("" if is_model else " No image was interpreted: no model is configured.")
        )
    )
    return blocks
