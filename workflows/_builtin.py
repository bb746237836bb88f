"""The workflows okaflow ships: a radiology report, a clinical question, a longitudinal comparison."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from okaflow._types import Modality
from okaflow.workflows._workflow import Workflow, register_workflow

if TYPE_CHECKING:
    from okaflow._case import Case

__all__ = ["CLINICAL_VQA", "LONGITUDINAL_COMPARISON", "RADIOLOGY_REPORT"]

_SYSTEM = (
    "You are a clinical imaging assistant inside okaflow. Every sentence you write is a claim that must "
    "cite the evidence ids it rests on, exactly as listed in the evidence table. Cite nothing you were not "
    "shown. Describe image findings only from the images you are given, and say when you are uncertain. "
    "Answer with JSON matching the schema you are given."
)

# Images this small gain legibility from a 2x upscale in the report.
_SMALL_SIDE = 160


def _radiology_visuals(case: Case) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for img in case.current_images:
        if img.modality == Modality.CT and not img.is_color:
            out.append(
                {
                    "task": "window",
                    "image_ids": [img.id],
                    "params": {"windows": ["lung", "mediastinum", "bone"]},
                    "reason": "CT shown in standard display windows",
                }
            )
        if img.frames > 1:
            out.append(
                {
                    "task": "montage",
                    "image_ids": [img.id],
                    "params": {"max_frames": 12},
                    "reason": f"{img.frames} frames shown on one sheet",
                }
            )
        if max(img.rows, img.columns) <= _SMALL_SIDE:
            out.append(
                {
                    "task": "super_resolution",
                    "image_ids": [img.id],
                    "params": {"scale": 4},
                    "reason": f"small {img.columns}×{img.rows} px image enlarged for reading",
                }
            )
    return out


def _comparison_visuals(case: Case) -> list[dict[str, Any]]:
    pairs = zip(case.prior_images, case.current_images, strict=False)
    out = [
        {"task": "comparison", "image_ids": [p.id, c.id], "reason": "prior and current side by side"} for p, c in pairs
    ]
    return out + _radiology_visuals(case)


RADIOLOGY_REPORT = register_workflow(
    Workflow(
        name="radiology-report",
        title="Radiology report",
        description="Findings and impression for the case's current study, in the clinical context.",
        sections=("findings", "impression"),
        system_prompt=_SYSTEM,
        instructions=(
            "Write the findings for the current images (section 'findings'), then the impression "
            "(section 'impression'). Use the clinical context where it matters."
        ),
        default_task="Report the current imaging study.",
        tools=("measure_image", "observation_trend", "retrieve_knowledge"),
        visuals=_radiology_visuals,
    )
)

CLINICAL_VQA = register_workflow(
    Workflow(
        name="clinical-vqa",
        title="Clinical question",
        description="Answers the case's question over its whole record and images.",
        sections=("answer",),
        system_prompt=_SYSTEM,
        instructions="Answer the question (section 'answer') in as few claims as the evidence allows.",
        default_task="Summarise what the record says about this patient's current problems.",
        tools=("retrieve_knowledge", "observation_trend", "measure_image"),
        needs_question=False,
    )
)

LONGITUDINAL_COMPARISON = register_workflow(
    Workflow(
        name="longitudinal-comparison",
        title="Longitudinal comparison",
        description="Compares the current study with a prior one, with lab trends in between.",
        sections=("findings", "comparison", "impression"),
        system_prompt=_SYSTEM,
        instructions=(
            "Describe the current images (section 'findings'), compare them with the prior ones "
            "(section 'comparison'), then give the impression (section 'impression')."
        ),
        default_task="Compare the current study with the prior study.",
        tools=("measure_image", "compare_images", "observation_trend", "retrieve_knowledge"),
        visuals=_comparison_visuals,
        needs_prior=True,
    )
)
