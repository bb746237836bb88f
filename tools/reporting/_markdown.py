"""Render a report as GitHub-flavoured Markdown, images as relative links next to the file.

Model output is untrusted, and Markdown viewers render inline HTML, so every piece of report text has
``&``, ``<`` and ``>`` escaped (a viewer shows them as typed); Markdown emphasis in model text is left
alone because it is harmless and often intended. Table cells additionally escape ``|`` and newlines.
"""

from __future__ import annotations

import html
import os
from pathlib import Path, PurePosixPath
from urllib.parse import quote

from okaflow.tools.reporting._artifacts import resolve_ref
from okaflow.tools.reporting._model import (
    ArtifactRef,
    Block,
    FigureBlock,
    GeneratedImageBlock,
    HeadingBlock,
    ImageBlock,
    NoticeBlock,
    Report,
    TableBlock,
    TextBlock,
    VerificationFlag,
)
from okaflow.tools.reporting._render_common import (
    AUTHOR_NAMES,
    NO_MODEL_NOTICE,
    CitationIndex,
    block_author,
    evidence_details,
    flag_title,
    provenance_parts,
    table_grid,
)

__all__ = ["render_markdown"]


def render_markdown(report: Report, *, base_dir: Path, out_dir: Path | None = None) -> str:
    """Render ``report`` as Markdown.

    Args:
        report: The report.
        base_dir: The directory the report's artifact paths are relative to.
        out_dir: Where the Markdown file will be written; image links are made relative to it.
            Defaults to ``base_dir`` (links are then the artifact paths themselves).

    Returns:
        The Markdown text, ending in one newline. The same report always gives the same text.

    Raises:
        RunDirectoryError: An artifact path is absolute or leaves ``base_dir``.
    """
    md = _MarkdownWriter(report, Path(base_dir), Path(out_dir) if out_dir is not None else Path(base_dir))
    return md.render()


class _MarkdownWriter:
    def __init__(self, report: Report, base_dir: Path, out_dir: Path) -> None:
        self.report = report
        self.base_dir = base_dir
        self.out_dir = out_dir
        self.cites = CitationIndex.build(report)
        self.citations_anchored = False

    def render(self) -> str:
        r = self.report
        parts = [f"# {_inline(r.title)}", self._meta_line()]
        if not r.model_configured:
            parts.append(f"> **⚠ No model configured.** {_inline(NO_MODEL_NOTICE)}")
        parts.extend(self._block(b) for b in r.blocks)
        if self.cites.numbers and not self.citations_anchored:
            # The report cites evidence but has no citations block: add one so every marker resolves.
            parts.extend(["## Citations", self._citations()])
        return "\n\n".join(p for p in parts if p) + "\n"

    def _meta_line(self) -> str:
        r = self.report
        fields = [
            ("Case", f"`{_code(r.case_id)}`"),
            ("Workflow", _inline(r.workflow)),
            ("Backend", _inline(r.backend)),
            ("Model", _inline(r.model_id) if r.model_id else "none configured"),
            ("Created", _inline(r.created)),
            ("okaflow", _inline(r.okaflow_version)),
        ]
        return " · ".join(f"**{k}:** {v}" for k, v in fields)

    def _block(self, block: Block) -> str:
        if isinstance(block, HeadingBlock):
            return f"{'#' * block.level} {_inline(block.text)}"
        if isinstance(block, TextBlock):
            return self._text(block)
        if isinstance(block, NoticeBlock):
            word = "Warning" if block.level == "warning" else "Note"
            return _quote(f"**{word}:** {_text(block.text)}")
        if isinstance(block, ImageBlock):
            caption = f"*{_inline(block.caption)}*{self._markers([block.evidence_id])}"
            return f"{self._image(block.image, block.caption)}\n\n{caption}"
        if isinstance(block, GeneratedImageBlock):
            return self._generated(block)
        if isinstance(block, FigureBlock):
            caption = f"*{_inline(block.caption)}*{self._markers(block.cites)}"
            return f"{self._image(block.image, block.caption)}\n\n{caption}"
        if isinstance(block, TableBlock):
            return self._table(block)
        return self._citations()

    def _text(self, block: TextBlock) -> str:
        out = [_text(block.text) + self._markers(block.cites)]
        out.extend(_flag(f) for f in block.flags)
        if block.author != "okaflow" or block.provenance is not None:
            by = f"_Written by {AUTHOR_NAMES[block.author]}"
            if block.provenance is not None:
                by += " — " + " · ".join(_inline(p) for p in provenance_parts(block.provenance))
            elif block.author == "model":
                by += " — no provenance recorded"
            out.append(by + "_")
        return "\n\n".join(out)

    def _generated(self, block: GeneratedImageBlock) -> str:
        verb = "Generated" if block_author(block) == "model" else "Derived"
        caption = f"**{_inline(block.label)}** — {_inline(block.caption)} (task: {_inline(block.task)})"
        if block.derived_from:
            caption += f"; from{self._markers(block.derived_from)}"
        prov = " · ".join(_inline(p) for p in provenance_parts(block.provenance))
        image = self._image(block.image, f"{block.label}: {block.caption}")
        return f"{image}\n\n{caption}\n\n_{verb} by {prov}_"

    def _table(self, block: TableBlock) -> str:
        header, rows = table_grid(block)
        lines = []
        if block.title:
            lines += [f"**{_inline(block.title)}**{self._markers(block.cites)}", ""]
        lines.append("| " + " | ".join(_cell(c) for c in header) + " |")
        lines.append("|" + "|".join(" --- " for _ in header) + "|")
        lines.extend("| " + " | ".join(_cell(c) for c in row) + " |" for row in rows)
        if block.cites and not block.title:
            lines += ["", f"Source:{self._markers(block.cites)}"]
        return "\n".join(lines)

    def _citations(self) -> str:
        # Only the first citations list carries the anchors; HTML ids (and GFM anchors) must be unique.
        anchor = not self.citations_anchored
        self.citations_anchored = True
        lines = []
        for number, evidence_id, ev in self.cites.entries():
            target = f'<a id="cite-{number}"></a>' if anchor else ""
            if ev is None:
                lines.append(f"{number}. {target}`{_code(evidence_id)}` — ⚠ not in the evidence table")
                continue
            details = ", ".join(_inline(d) for d in evidence_details(ev))
            lines.append(f"{number}. {target}`{_code(evidence_id)}` — {_inline(ev.summary)} ({details})")
        return "\n".join(lines)

    def _markers(self, ids: list[str]) -> str:
        numbers = self.cites.numbers_for(ids)
        return "".join(f" [[{n}]](#cite-{n})" for n in numbers)

    def _image(self, ref: ArtifactRef, alt: str) -> str:
        target = resolve_ref(self.base_dir, ref)
        rel = PurePosixPath(Path(os.path.relpath(target, self.out_dir)).as_posix())
        alt_text = _inline(alt).replace("[", "\\[").replace("]", "\\]")
        return f"![{alt_text}]({quote(str(rel))})"


def _flag(flag: VerificationFlag) -> str:
    about = f" (`{_code(flag.evidence_id)}`)" if flag.evidence_id else ""
    return _quote(f"⚠ **{flag_title(flag)}:** {_inline(flag.message)}{about}")


def _inline(text: str) -> str:
    """One line of escaped text (newlines would end a heading, list item or emphasis)."""
    return html.escape(" ".join(text.split()), quote=False)


def _text(text: str) -> str:
    """Escaped multi-line text, paragraphs kept."""
    return html.escape(text.strip(), quote=False)


def _code(text: str) -> str:
    """Text for inside backticks, where escapes are shown literally: drop the backticks instead."""
    return " ".join(text.replace("`", "'").split())


def _cell(text: str) -> str:
    return _text(text).replace("|", "\\|").replace("\r\n", "<br>").replace("\n", "<br>")


def _quote(text: str) -> str:
    return "\n".join(f"> {line}" if line else ">" for line in text.splitlines())
