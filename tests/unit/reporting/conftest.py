"""Synthetic reports with every block type, built from made-up data (no patient, no model)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from okaflow import _constants
from okaflow._types import Evidence, Provenance
from okaflow.tools.fhir import ObservationFact
from okaflow.tools.reporting import (
    ArtifactStore,
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
    plot_observation_trend,
    stamp_label,
)

CREATED = "2025-01-02T03:04:05+00:00"


def synthetic_xray(size: tuple[int, int] = (256, 256), seed: int = 0) -> Image.Image:
    """A grey radial blob with noise: looks like an image, is nobody's."""
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    r = np.hypot((xx - w / 2) / w, (yy - h / 2) / h)
    noise = np.random.default_rng(seed).normal(0, 8, (h, w))
    pixels = np.clip(200 * (1 - r * 1.6) + noise, 0, 255).astype(np.uint8)
    return Image.fromarray(pixels)


def hb_series() -> list[ObservationFact]:
    values = [
        (13.4, "2024-01-05"),
        (11.1, "2024-02-10T08:30:00Z"),
        (10.2, "2024-03-01"),
        (14.0, "2024-04-20"),
    ]
    return [
        ObservationFact(
            id=f"Observation/hb-{i}",
            text="Haemoglobin",
            value=v,
            unit="g/dL",
            effective=d,
            reference_low=12.0,
            reference_high=16.0,
        )
        for i, (v, d) in enumerate(values)
    ]


def evidence_rows() -> list[Evidence]:
    return [
        Evidence(id="Observation/hb-1", kind="observation", summary="Haemoglobin 11.1 g/dL (L)", time="2024-02-10"),
        Evidence(id="Observation/hb-2", kind="observation", summary="Haemoglobin 10.2 g/dL (L)", time="2024-03-01"),
        Evidence(id="Image/cxr-1", kind="image", summary="Chest X-ray, PA view", source="cxr-1.dcm"),
        Evidence(id="Condition/anaemia", kind="condition", summary="Iron deficiency anaemia, active"),
        # Listed but cited by no block: numbered after every cited id.
        Evidence(id="Observation/ferritin", kind="observation", summary="Ferritin 8 ng/mL", time="2024-03-01"),
    ]


def model_provenance() -> Provenance:
    return Provenance(
        backend="openai-compatible",
        model_id="unimedvl-14b",
        prompt_hash="0123456789abcdef0123456789abcdef",
        seed=7,
        created=CREATED,
    )


def build_report(base_dir: Path, *, model_configured: bool = True, hostile: str = "") -> Report:
    """A report with one block of every type; ``hostile`` is appended to model-written text."""
    store = ArtifactStore(base_dir)
    xray = store.put_image(synthetic_xray())
    generated = store.put_image(stamp_label(synthetic_xray(seed=1)))
    trend = store.put_image(plot_observation_trend(hb_series()))
    evidence = evidence_rows()
    blocks = [
        HeadingBlock(text="Findings", level=2),
        NoticeBlock(level="info", text="Synthetic case for tests."),
        TextBlock(
            text="Haemoglobin fell below range in February and March." + hostile,
            author="model",
            provenance=model_provenance(),
            cites=["Observation/hb-1", "Observation/hb-2"],
            section="findings",
        ),
        TextBlock(
            text="The lungs are clear.",
            author="model",
            provenance=model_provenance(),
            flags=[VerificationFlag(code="no-citation", message="This claim cites no evidence.")],
        ),
        TextBlock(
            text="Active condition: iron deficiency anaemia.",
            author="evidence-only",
            cites=["Condition/anaemia"],
        ),
        ImageBlock(image=xray, caption="Chest X-ray, PA, lung window", evidence_id="Image/cxr-1"),
        GeneratedImageBlock(
            image=generated,
            caption="Counterfactual without the opacity",
            label=_constants.SYNTHETIC_LABEL,
            task="counterfactual-cxr",
            derived_from=["Image/cxr-1"],
            provenance=model_provenance(),
            ai_generated=True,
        ),
        FigureBlock(image=trend, caption="Haemoglobin over time", cites=["Observation/hb-1", "Observation/hb-2"]),
        TableBlock(
            title="Recent labs",
            columns=["Test", "Value", "Date"],
            rows=[["Haemoglobin", "10.2 g/dL", "2024-03-01"], ["Ferritin | serum", "8 ng/mL", "2024-03-01"]],
            cites=["Observation/hb-2"],
        ),
        NoticeBlock(level="warning", text="Two claims could not be verified."),
        HeadingBlock(text="Citations", level=2),
        CitationsBlock(entries=evidence),
    ]
    return Report(
        title="Anaemia follow-up",
        case_id="case-0001",
        workflow="lab-trend",
        created=CREATED,
        okaflow_version="0.1.0",
        backend="openai-compatible" if model_configured else "none",
        model_id="unimedvl-14b" if model_configured else None,
        model_configured=model_configured,
        blocks=blocks,
        evidence=evidence,
    )


@pytest.fixture
def rich_report(tmp_path: Path) -> tuple[Report, Path]:
    """A report with every block type and the base directory holding its artifacts."""
    return build_report(tmp_path), tmp_path


@pytest.fixture
def make_report() -> Callable[..., Report]:
    """``build_report`` itself, for tests that need a variant (no model, hostile text)."""
    return build_report


@pytest.fixture
def make_xray() -> Callable[..., Image.Image]:
    """``synthetic_xray`` itself."""
    return synthetic_xray


@pytest.fixture
def hb_points() -> list[ObservationFact]:
    """Four haemoglobin results, two below the reference range."""
    return hb_series()
