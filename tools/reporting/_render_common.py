"""What the Markdown and HTML renderers share: citation numbering, authorship, provenance lines.

Keeping these in one place means a citation is ``[3]`` in both formats and a provenance line reads the
same in both, which matters when a reader compares the files of one run.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from okaflow._types import Evidence, Provenance
from okaflow.tools.reporting._model import (
    Author,
    Block,
    CitationsBlock,
    FigureBlock,
    GeneratedImageBlock,
    ImageBlock,
    Report,
    TableBlock,
    TextBlock,
    VerificationFlag,
    block_cites,
)

__all__ = [
    "AUTHOR_NAMES",
    "FLAG_TITLES",
    "NO_MODEL_NOTICE",
    "PROMPT_HASH_CHARS",
    "CitationIndex",
    "block_author",
    "block_cites",
    "evidence_details",
    "flag_title",
    "provenance_parts",
    "table_grid",
]

# Headline a reader sees for each verification flag code.
FLAG_TITLES: dict[str, str] = {
    "no-citation": "Unverified — cites no evidence",
    "unknown-citation": "Unverified — cites evidence that does not exist",
    "not-supported": "Unverified — the cited evidence does not say this",
    "image-finding-without-model": "Not allowed — image finding without a model",
}

# Said at the top of every report of a run without a model (mission: "no silent toy").
NO_MODEL_NOTICE = (
    "No model is configured for this run. This report holds only facts from the record, measurements "
    "and classical image operations; it states no image findings."
)

# Who wrote a block, as a reader should read it.
AUTHOR_NAMES: dict[str, str] = {
    "okaflow": "okaflow, from the record",
    "evidence-only": "okaflow's evidence-only analyst (no model)",
    "model": "a model",
}

# How many hex digits of a prompt hash identify it for a human (git's short-hash habit).
PROMPT_HASH_CHARS = 12


@dataclass
class CitationIndex:
    """Citation numbers for one report: 1, 2, … in first-cited order, then uncited listed evidence.

    Attributes:
        numbers: Evidence id → citation number.
        evidence: Evidence id → the evidence row, where the report has one.
        uses: Citation number → indices of the blocks that cite it (for back-links).
    """

    numbers: dict[str, int] = field(default_factory=dict)
    evidence: dict[str, Evidence] = field(default_factory=dict)
    uses: dict[int, list[int]] = field(default_factory=dict)

    @classmethod
    def build(cls, report: Report) -> CitationIndex:
        """Number every cited id and every entry of the report's citations blocks."""
        index = cls()
        listed: list[Evidence] = []
        for block in report.blocks:
            if isinstance(block, CitationsBlock):
                listed.extend(block.entries)
        # The report's evidence table wins over a citations block's copy of the same id.
        for ev in [*listed, *report.evidence]:
            index.evidence[ev.id] = ev
        for position, block in enumerate(report.blocks):
            for evidence_id in block_cites(block):
                number = index.numbers.setdefault(evidence_id, len(index.numbers) + 1)
                uses = index.uses.setdefault(number, [])
                if position not in uses:
                    uses.append(position)
        for ev in listed:
            index.numbers.setdefault(ev.id, len(index.numbers) + 1)
        return index

    def entries(self) -> list[tuple[int, str, Evidence | None]]:
        """``(number, evidence id, evidence or None)`` in number order."""
        return [(n, i, self.evidence.get(i)) for i, n in sorted(self.numbers.items(), key=lambda kv: kv[1])]

    def numbers_for(self, ids: list[str]) -> list[int]:
        """The citation numbers of ``ids``, without repeats, ascending (``[1][4][7]`` reads as a list)."""
        return sorted({self.numbers[i] for i in ids if i in self.numbers})


def block_author(block: Block) -> Author | None:
    """Who wrote a content block; ``None`` for structure (headings, notices, citations)."""
    if isinstance(block, TextBlock):
        return block.author
    if isinstance(block, GeneratedImageBlock):
        if block.ai_generated or block.provenance.is_model:
            return "model"
        return "okaflow"
    if isinstance(block, ImageBlock | FigureBlock | TableBlock):
        return "okaflow"
    return None


def provenance_parts(prov: Provenance) -> list[str]:
    """Short ``"label value"`` pieces describing where output came from, in a fixed order."""
    parts = [f"backend {prov.backend}"]
    if prov.model_id:
        parts.append(f"model {prov.model_id}")
    if prov.prompt_hash:
        parts.append(f"prompt {prov.prompt_hash[:PROMPT_HASH_CHARS]}")
    if prov.seed is not None:
        parts.append(f"seed {prov.seed}")
    if prov.created:
        parts.append(f"at {prov.created}")
    return parts


def flag_title(flag: VerificationFlag) -> str:
    """The headline for a flag (its code, if the code is new to this renderer)."""
    return FLAG_TITLES.get(flag.code, f"Unverified — {flag.code}")


def table_grid(block: TableBlock) -> tuple[list[str], list[list[str]]]:
    """Header and rows padded to one width, so ragged rows render without losing a cell.

    A row longer than the header gets blank extra headers rather than being cut: a renderer must
    not silently drop data.
    """
    width = max([len(block.columns), *(len(r) for r in block.rows)])
    header = [*block.columns, *([""] * (width - len(block.columns)))]
    rows = [[*r, *([""] * (width - len(r)))] for r in block.rows]
    return header, rows


def evidence_details(ev: Evidence) -> list[str]:
    """The small print after an evidence summary: kind, time, source."""
    return [part for part in (ev.kind, ev.time, ev.source) if part]
