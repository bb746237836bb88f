"""verify_claim: each rule catches what it should and passes what it should."""

from __future__ import annotations

from okaflow import Evidence
from okaflow.agents import verify_claim
from okaflow.model_backend import Claim

TABLE = {
    "Observation/cr": Evidence(
        id="Observation/cr",
        kind="observation",
        summary="Creatinine 1.4 mg/dL (ref 0.6–1.2) H on 2026-03-01",
        data={"value": 1.4, "unit": "mg/dL"},
    ),
    "Image/ct": Evidence(id="Image/ct", kind="image", summary="CT image 512×512 px"),
}


def codes(text: str, cites: list[str], kind: str = "fact", sees: bool = True) -> list[str]:
    claim = Claim(section="findings", kind=kind, text=text, cites=cites)  # type: ignore[arg-type]
    return [f.code for f in verify_claim(claim, TABLE, backend_sees_images=sees)]


def test_supported_claim_passes() -> None:
    assert codes("Creatinine was 1.40 mg/dL on 2026-03-01, above range.", ["Observation/cr"]) == []


def test_no_citation() -> None:
    assert codes("Creatinine is high.", []) == ["no-citation"]


def test_unknown_citation_named() -> None:
    claim = Claim(section="findings", kind="fact", text="Creatinine 1.4", cites=["Observation/cr", "Observation/x"])
    flags = verify_claim(claim, TABLE, backend_sees_images=True)
    assert [(f.code, f.evidence_id) for f in flags] == [("unknown-citation", "Observation/x")]


def test_wrong_number_is_not_supported() -> None:
    assert codes("Creatinine 2.1 mg/dL.", ["Observation/cr"]) == ["not-supported"]


def test_unrelated_terms_are_not_supported() -> None:
    assert codes("Haemoglobin decreased.", ["Observation/cr"]) == ["not-supported"]


def test_image_finding_needs_a_model() -> None:
    assert codes("CT shows 512 px consolidation.", ["Image/ct"], kind="image_finding", sees=False) == [
        "image-finding-without-model"
    ]
    assert codes("CT image shows consolidation.", ["Image/ct"], kind="image_finding", sees=True) == []
    # ...but an image finding citing only a lab row is checked like any claim.
    assert codes("Consolidation seen.", ["Observation/cr"], kind="image_finding", sees=True) == ["not-supported"]
