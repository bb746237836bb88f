"""The verify step's rules: does each claim cite evidence that exists and says what is claimed?

Checks, in order, for every claim:

1. it cites something (``no-citation``);
2. every cited id is in the evidence table (``unknown-citation``);
3. every number in the claim appears in the cited evidence's summary or data (``not-supported``) —
   a claim that says 2.1 mg/dL while citing a row that says 1.4 mg/dL is caught here;
4. the claim shares at least one content word with the cited evidence (``not-supported``) — a claim
   about haemoglobin citing a creatinine row is caught here;
5. an image finding written by a backend that cannot see images (``image-finding-without-model``).

Rules 3 and 4 are skipped for an image finding that cites an image: its support is the pixels.

Flagged claims stay in the report, marked, so a reader sees exactly what is unsupported.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from okaflow._types import Evidence
from okaflow.model_backend import Claim
from okaflow.tools.reporting import VerificationFlag

__all__ = ["verify_claim"]

_PIXEL_KINDS = frozenset({"image", "generated_image"})
_NUMBER = re.compile(r"(?<![\w/.])[-+]?\d+(?:[.,]\d+)?")
_WORD = re.compile(r"[a-z][a-z]{3,}")
_STOP = frozenset(
    [
        "this",
        "that",
        "with",
        "from",
        "have",
        "were",
        "been",
        "than",
        "then",
        "there",
        "their",
        "into",
        "over",
        "under",
        "also",
        "which",
        "while",
        "image",
        "images",
        "study",
        "patient",
        "value",
        "values",
        "shows",
        "show",
        "seen",
        "noted",
        "record",
        "recorded",
        "current",
        "prior",
        "about",
        "after",
        "before",
        "since",
        "between",
        "within",
        "without",
    ]
)


def _numbers(text: str) -> set[float]:
    out = set()
    for token in _NUMBER.findall(text):
        try:
            out.add(round(float(token.replace(",", ".")), 6))
        except ValueError:
            continue
    return out


def _flatten(value: Any) -> Iterable[str]:
    if isinstance(value, Mapping):
        for v in value.values():
            yield from _flatten(v)
    elif isinstance(value, list | tuple):
        for v in value:
            yield from _flatten(v)
    elif value is not None:
        yield str(value)


def _evidence_text(e: Evidence) -> str:
    return " ".join([e.id, e.summary, *_flatten(e.data)])


def _numbers_in_evidence(text: str) -> set[float]:
    nums = _numbers(text)
    # Evidence data holds floats like 1.4 that may be written "1.40"; ISO dates split into parts.
    nums |= {round(float(n), 6) for n in re.findall(r"\d+", text)}
    return nums


def verify_claim(
    claim: Claim, evidence: Mapping[str, Evidence], *, backend_sees_images: bool
) -> list[VerificationFlag]:
    """Every reason the claim is not supported by its citations; empty when it is."""
    flags: list[VerificationFlag] = []
    if claim.kind == "image_finding" and not backend_sees_images:
        flags.append(
            VerificationFlag(
                code="image-finding-without-model",
                message="an image finding from a backend that cannot interpret images",
            )
        )
    if not claim.cites:
        flags.append(VerificationFlag(code="no-citation", message="the claim cites no evidence"))
        return flags
    known = [evidence[c] for c in claim.cites if c in evidence]
    for c in claim.cites:
        if c not in evidence:
            flags.append(
                VerificationFlag(
                    code="unknown-citation", message=f"cites {c}, which is not in the evidence", evidence_id=c
                )
            )
    if not known or (claim.kind == "image_finding" and any(e.kind in _PIXEL_KINDS for e in known)):
        # An image finding rests on pixels, which no text row restates: only its citations are checked.
        return flags
    text = " ".join(_evidence_text(e) for e in known)
    missing = sorted(_numbers(claim.text) - _numbers_in_evidence(text))
    if missing:
        shown = ", ".join(f"{n:g}" for n in missing)
        flags.append(
            VerificationFlag(code="not-supported", message=f"number(s) {shown} do not appear in the cited evidence")
        )
    claim_words = set(_WORD.findall(claim.text.lower())) - _STOP
    if claim_words and not claim_words & set(_WORD.findall(text.lower())):
        flags.append(
            VerificationFlag(code="not-supported", message="the claim shares no terms with the evidence it cites")
        )
    return flags
