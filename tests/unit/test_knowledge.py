from __future__ import annotations

from pathlib import Path

import pytest

from okaflow import ConfigurationError
from okaflow.tools.knowledge import BM25Retriever, CombinedRetriever, Passage


def test_bm25_ranks_the_matching_passage_first(tmp_path: Path) -> None:
    (tmp_path / "g.md").write_text(
        "Pulmonary nodules under 6 mm need no routine follow-up.\n\nRenal function: creatinine.\n"
    )
    (tmp_path / "h.txt").write_text("Fever and cough suggest infection.")
    hits = BM25Retriever.from_directory(tmp_path).search("nodule follow-up pulmonary", k=2)
    assert hits[0].id == "Knowledge/g.md#1" and hits[0].kind == "knowledge"
    assert all(h.data["score"] > 0 for h in hits)
    assert BM25Retriever.from_directory(tmp_path).search("zzz") == []


def test_combined_retriever_deduplicates() -> None:
    r = BM25Retriever([Passage(id="K/1", text="creatinine rising"), Passage(id="K/2", text="stable nodule")])
    assert [e.id for e in CombinedRetriever([r, r]).search("creatinine")] == ["K/1"]


def test_missing_directory_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="does not exist"):
        BM25Retriever.from_directory(tmp_path / "nope")
