"""Pluggable knowledge retrieval for the Knowledge step.

A retriever turns a query into citable :class:`~okaflow.Evidence` rows of kind ``knowledge``.
Shipped: :class:`BM25Retriever` over passages — the patient's own history (prior report
conclusions, problems) via :meth:`BM25Retriever.from_patient`, or a folder of the user's
documents (``.md``/``.txt``, split into paragraphs) via :meth:`BM25Retriever.from_directory`.
Any object with a matching ``search`` method plugs in (an embedding index, a guideline service).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict

from okaflow._errors import ConfigurationError
from okaflow._text import content_terms
from okaflow._types import Evidence
from okaflow.tools.fhir import PatientContext

__all__ = ["BM25Retriever", "CombinedRetriever", "KnowledgeRetriever", "Passage"]


class Passage(BaseModel):
    model_config = ConfigDict(frozen=True)
    id: str
    text: str
    source: str | None = None
    title: str | None = None


@runtime_checkable
class KnowledgeRetriever(Protocol):
    def search(self, query: str, *, k: int = 5) -> list[Evidence]: ...


def _tokens(text: str) -> list[str]:
    return content_terms(text)


class BM25Retriever:
    """Okapi BM25 (k1=1.5, b=0.75) over a fixed list of passages; deterministic ranking."""

    def __init__(self, passages: Sequence[Passage], *, k1: float = 1.5, b: float = 0.75) -> None:
        self.passages = list(passages)
        self._docs = [Counter(_tokens(p.text)) for p in self.passages]
        self._lengths = [sum(d.values()) for d in self._docs]
        self._avg = (sum(self._lengths) / len(self._lengths)) if self._lengths else 0.0
        df: Counter[str] = Counter()
        for d in self._docs:
            df.update(d.keys())
        n = len(self._docs)
        self._idf = {t: math.log(1 + (n - f + 0.5) / (f + 0.5)) for t, f in df.items()}
        self.k1, self.b = k1, b

    def search(self, query: str, *, k: int = 5) -> list[Evidence]:
        """The ``k`` best passages with a positive score, best first (ties by passage id)."""
        terms = _tokens(query)
        scored = []
        for i, doc in enumerate(self._docs):
            score = 0.0
            for t in terms:
                if t in doc:
                    tf = doc[t]
                    norm = 1 - self.b + self.b * self._lengths[i] / (self._avg or 1.0)
                    score += self._idf[t] * tf * (self.k1 + 1) / (tf + self.k1 * norm)
            if score > 0:
                scored.append((-score, self.passages[i].id, i))
        scored.sort()
        return [self._evidence(i, -s) for s, _, i in scored[:k]]

    def _evidence(self, index: int, score: float) -> Evidence:
        p = self.passages[index]
        return Evidence(
            id=p.id,
            kind="knowledge",
            summary=p.text if len(p.text) <= 400 else p.text[:397] + "...",
            source=p.source,
            data={"title": p.title, "score": round(score, 4), "text": p.text},
        )

    @classmethod
    def from_directory(cls, directory: str | Path) -> BM25Retriever:
        """Index every ``.md``/``.txt`` file under ``directory``, one passage per paragraph."""
        root = Path(directory)
        if not root.is_dir():
            raise ConfigurationError(
                f"knowledge directory {root} does not exist", hint="pass a folder of .md/.txt files"
            )
        passages = []
        for path in sorted(p for p in root.rglob("*") if p.suffix.lower() in {".md", ".txt"}):
            paragraphs = [s.strip() for s in re.split(r"\n\s*\n", path.read_text(encoding="utf-8")) if s.strip()]
            rel = path.relative_to(root).as_posix()
            passages += [
                Passage(id=f"Knowledge/{rel}#{n}", text=text, source=str(path), title=path.stem)
                for n, text in enumerate(paragraphs, start=1)
            ]
        return cls(passages)

    @classmethod
    def from_patient(cls, patient: PatientContext) -> BM25Retriever:
        """Index the patient's own narrative history: prior report conclusions and problem list."""
        passages = [
            Passage(id=r.id, text=f"{r.text}: {r.conclusion}", source=patient.source, title=r.text)
            for r in patient.reports
            if r.conclusion
        ]
        passages += [
            Passage(id=c.id, text=f"{c.text} ({c.clinical_status or 'status unknown'})", source=patient.source)
            for c in patient.conditions
        ]
        return cls(passages)


class CombinedRetriever:
    """Searches several retrievers and merges their results, keeping each one's order."""

    def __init__(self, retrievers: Iterable[KnowledgeRetriever]) -> None:
        self.retrievers = list(retrievers)

    def search(self, query: str, *, k: int = 5) -> list[Evidence]:
        merged: dict[str, Evidence] = {}
        for r in self.retrievers:
            for e in r.search(query, k=k):
                merged.setdefault(e.id, e)
        return list(merged.values())[:k]
