"""The interleaved report: an ordered list of typed blocks, each traceable to its evidence.

Images are stored once as artifacts (PNG files named by content hash) under the report's base
directory; blocks refer to them by ``ArtifactRef``. Renderers (JSON, Markdown, HTML) only read.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from okaflow._types import Evidence, Provenance

__all__ = [
    "ArtifactRef",
    "Author",
    "Block",
    "CitationsBlock",
    "FigureBlock",
    "GeneratedImageBlock",
    "HeadingBlock",
    "ImageBlock",
    "NoticeBlock",
    "Report",
    "TableBlock",
    "TextBlock",
    "VerificationFlag",
    "block_cites",
]

# Who wrote a block: okaflow itself (facts, structure), the evidence-only analyst, or a model.
Author = Literal["okaflow", "evidence-only", "model"]

_FROZEN = ConfigDict(frozen=True)


class ArtifactRef(BaseModel):
    """A file stored by content hash, relative to the report's base directory."""

    model_config = _FROZEN
    path: str
    sha256: str
    media_type: str = "image/png"
    width: int | None = None
    height: int | None = None


class VerificationFlag(BaseModel):
    """Why the verify step does not accept a claim as supported."""

    model_config = _FROZEN
    code: Literal["no-citation", "unknown-citation", "not-supported", "image-finding-without-model"]
    message: str
    evidence_id: str | None = None


class HeadingBlock(BaseModel):
    model_config = _FROZEN
    type: Literal["heading"] = "heading"
    text: str
    level: int = Field(default=2, ge=1, le=4)


class TextBlock(BaseModel):
    model_config = _FROZEN
    type: Literal["text"] = "text"
    text: str
    author: Author = "okaflow"
    provenance: Provenance | None = None
    cites: list[str] = Field(default_factory=list)
    flags: list[VerificationFlag] = Field(default_factory=list)
    section: str | None = None


class NoticeBlock(BaseModel):
    model_config = _FROZEN
    type: Literal["notice"] = "notice"
    level: Literal["info", "warning"] = "info"
    text: str


class ImageBlock(BaseModel):
    """A rendering of a source image (windowed, resized), citing the image's evidence id."""

    model_config = _FROZEN
    type: Literal["image"] = "image"
    image: ArtifactRef
    caption: str
    evidence_id: str


class GeneratedImageBlock(BaseModel):
    """An image produced by a generation tool. Always labelled, always linked to its sources."""

    model_config = _FROZEN
    type: Literal["generated_image"] = "generated_image"
    image: ArtifactRef
    caption: str
    label: str
    task: str
    derived_from: list[str] = Field(default_factory=list)
    provenance: Provenance
    ai_generated: bool = Field(description="True for a generative model, False for a classical derivation.")
    evidence_id: str | None = None


class FigureBlock(BaseModel):
    """A plot okaflow drew (e.g. a lab trend), citing the facts plotted."""

    model_config = _FROZEN
    type: Literal["figure"] = "figure"
    image: ArtifactRef
    caption: str
    cites: list[str] = Field(default_factory=list)


class TableBlock(BaseModel):
    model_config = _FROZEN
    type: Literal["table"] = "table"
    title: str | None = None
    columns: list[str]
    rows: list[list[str]]
    cites: list[str] = Field(default_factory=list)


class CitationsBlock(BaseModel):
    """The evidence cited anywhere in the report, in first-cited order."""

    model_config = _FROZEN
    type: Literal["citations"] = "citations"
    entries: list[Evidence]


Block = Annotated[
    HeadingBlock
    | TextBlock
    | NoticeBlock
    | ImageBlock
    | GeneratedImageBlock
    | FigureBlock
    | TableBlock
    | CitationsBlock,
    Field(discriminator="type"),
]


class Report(BaseModel):
    """One interleaved report. ``blocks`` is the reading order."""

    model_config = _FROZEN
    title: str
    case_id: str
    workflow: str
    created: str
    okaflow_version: str
    backend: str
    model_id: str | None = None
    model_configured: bool
    blocks: list[Block]
    evidence: list[Evidence] = Field(default_factory=list)

    def cited_ids(self) -> list[str]:
        """Every evidence id cited by any block, first-cited order, no repeats."""
        seen: dict[str, None] = {}
        for block in self.blocks:
            for i in block_cites(block):
                seen.setdefault(i, None)
        return list(seen)


def block_cites(block: Block) -> list[str]:
    """The evidence ids a block cites, in its own order.

    A generated image cites the images it derives from; its own evidence id names it, it does not cite it.
    """
    if isinstance(block, TextBlock | FigureBlock | TableBlock):
        return list(block.cites)
    if isinstance(block, ImageBlock):
        return [block.evidence_id]
    if isinstance(block, GeneratedImageBlock):
        return list(block.derived_from)
    return []
