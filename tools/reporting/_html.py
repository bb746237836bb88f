"""Render a report as ONE self-contained HTML file: images inlined, CSS inlined, nothing fetched.

Everything that came from a model, a record or a user is escaped with ``html.escape``; model output is
untrusted. A Content-Security-Policy meta tag also forbids scripts and any network request, so even a
renderer bug could not make the file run code or call out.
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

from PIL import Image

from okaflow.tools.reporting._artifacts import read_ref
from okaflow.tools.reporting._html_style import REPORT_CSS
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

__all__ = ["CONTENT_SECURITY_POLICY", "render_html"]

CONTENT_SECURITY_POLICY = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; base-uri 'none'"


def render_html(report: Report, *, base_dir: Path) -> str:
    """Render ``report`` as a standalone HTML page.

    Args:
        report: The report.
        base_dir: The directory the report's artifact paths are relative to; every image is read
            from there, checked against its hash and inlined as a ``data:`` URI.

    Returns:
        The HTML text. The same report and artifacts always give the same text.

    Raises:
        RunDirectoryError: An artifact is missing, outside ``base_dir``, or does not match its hash.
    """
    return _HtmlWriter(report, Path(base_dir)).render()


def _e(text: str) -> str:
    return html.escape(text, quote=True)


class _HtmlWriter:
    def __init__(self, report: Report, base_dir: Path) -> None:
        self.report = report
        self.base_dir = base_dir
        self.cites = CitationIndex.build(report)
        self.citations_anchored = False

    def render(self) -> str:
        r = self.report
        body = [self._header()]
        body.extend(self._block(i, b) for i, b in enumerate(r.blocks))
        if self.cites.numbers and not self.citations_anchored:
            # Cited evidence but no citations block: add one so every superscript has a target.
            body.append(self._citations(len(r.blocks), heading=True))
        body.append(
            "<footer><p>Rendered by okaflow "
            f"{_e(r.okaflow_version)}. Badges show who wrote each block. Generated images are synthetic "
            "and not for diagnosis.</p></footer>"
        )
        return (
            "<!DOCTYPE html>\n"
            '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f'<meta http-equiv="Content-Security-Policy" content="{CONTENT_SECURITY_POLICY}">\n'
            '<meta name="referrer" content="no-referrer">\n'
            f'<meta name="generator" content="okaflow {_e(r.okaflow_version)}">\n'
            f"<title>{_e(r.title)} — {_e(r.case_id)}</title>\n"
            f"<style>\n{REPORT_CSS}\n</style>\n</head>\n<body>\n"
            '<main class="page">\n' + "\n".join(body) + "\n</main>\n</body>\n</html>\n"
        )

    def _header(self) -> str:
        r = self.report
        rows = [
            ("Case", f"<code>{_e(r.case_id)}</code>"),
            ("Workflow", _e(r.workflow)),
            ("Backend", _e(r.backend)),
            ("Model", _e(r.model_id) if r.model_id else "<em>none configured</em>"),
            ("Created", f"<time>{_e(r.created)}</time>"),
            ("okaflow", _e(r.okaflow_version)),
        ]
        meta = "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in rows)
        out = [
            '<header class="report-header">',
            '<p class="kicker">okaflow interleaved report</p>',
            f"<h1>{_e(r.title)}</h1>",
            f'<dl class="meta">{meta}</dl>',
            "</header>",
        ]
        if not r.model_configured:
            out.append(
                f'<div class="no-model" role="alert"><strong>No model configured</strong>{_e(NO_MODEL_NOTICE)}</div>'
            )
        return "\n".join(out)

    def _block(self, i: int, block: Block) -> str:
        if isinstance(block, HeadingBlock):
            return f'<h{block.level} id="b{i}">{_e(block.text)}</h{block.level}>'
        if isinstance(block, TextBlock):
            return self._text(i, block)
        if isinstance(block, NoticeBlock):
            word = "Warning" if block.level == "warning" else "Note"
            role = "alert" if block.level == "warning" else "note"
            return (
                f'<aside class="notice {block.level}" id="b{i}" role="{role}">'
                f"<p><strong>{word}:</strong> {_paragraphs_inline(block.text)}</p></aside>"
            )
        if isinstance(block, ImageBlock):
            caption = f"{_e(block.caption)}{self._markers(i, [block.evidence_id])}"
            return self._figure(i, "image", block.image, block.caption, caption, "okaflow")
        if isinstance(block, GeneratedImageBlock):
            return self._generated(i, block)
        if isinstance(block, FigureBlock):
            caption = f"{_e(block.caption)}{self._markers(i, block.cites)}"
            return self._figure(i, "figure", block.image, block.caption, caption, "okaflow")
        if isinstance(block, TableBlock):
            return self._table(i, block)
        return self._citations(i, heading=False)

    def _text(self, i: int, block: TextBlock) -> str:
        paragraphs = [p for p in block.text.strip().split("\n\n") if p.strip()] or [""]
        markers = self._markers(i, block.cites)
        html_paras = [f"<p>{_lines(p)}</p>" for p in paragraphs[:-1]]
        html_paras.append(f"<p>{_lines(paragraphs[-1])}{markers}</p>")
        out = [
            f'<section class="block text author-{block.author}" id="b{i}"'
            + (f' data-section="{_e(block.section)}"' if block.section else "")
            + ">",
            _badge(block.author),
            *html_paras,
        ]
        if block.flags:
            out.append('<div class="flags" role="note">')
            for flag in block.flags:
                about = f" <code>{_e(flag.evidence_id)}</code>" if flag.evidence_id else ""
                out.append(
                    f'<p class="flag flag-{_e(flag.code)}"><strong>⚠ {_e(flag_title(flag))}</strong>'
                    f"{_e(flag.message)}{about}</p>"
                )
            out.append("</div>")
        if block.provenance is not None:
            out.append(f'<p class="prov">{_e(" · ".join(provenance_parts(block.provenance)))}</p>')
        elif block.author == "model":
            out.append('<p class="prov missing">No provenance recorded for this model output.</p>')
        out.append("</section>")
        return "\n".join(out)

    def _generated(self, i: int, block: GeneratedImageBlock) -> str:
        author = block_author(block) or "model"
        verb = "Generated" if author == "model" else "Derived"
        caption = (
            f'<span class="synthetic-label">{_e(block.label)}</span>'
            f'{_e(block.caption)} <span class="task">(task: {_e(block.task)})</span>'
        )
        if block.derived_from:
            caption += f" from{self._markers(i, block.derived_from)}"
        prov = _e(" · ".join(provenance_parts(block.provenance)))
        caption += f'<br><span class="prov">{verb} by {prov}</span>'
        alt = f"{block.label}: {block.caption}"
        return self._figure(i, "generated", block.image, alt, caption, author)

    def _figure(self, i: int, kind: str, ref: ArtifactRef, alt: str, caption: str, author: str) -> str:
        data = read_ref(self.base_dir, ref)
        size = _image_size(ref, data)
        dims = f' width="{size[0]}" height="{size[1]}"' if size else ""
        src = f"data:{_e(ref.media_type)};base64,{base64.b64encode(data).decode('ascii')}"
        return (
            f'<figure class="block {kind}" id="b{i}">{_badge(author)}'
            f'<img src="{src}" alt="{_e(alt)}"{dims} decoding="sync">'
            f"<figcaption>{caption}</figcaption></figure>"
        )

    def _table(self, i: int, block: TableBlock) -> str:
        header, rows = table_grid(block)
        head = "".join(f'<th scope="col">{_e(c)}</th>' for c in header)
        body = "".join("<tr>" + "".join(f"<td>{_lines(c)}</td>" for c in row) + "</tr>" for row in rows)
        title = ""
        if block.title or block.cites:
            title = f'<p class="table-title">{_e(block.title or "Table")}{self._markers(i, block.cites)}</p>'
        return (
            f'<section class="block table-block" id="b{i}">{_badge("okaflow")}{title}'
            f'<div class="table-wrap" tabindex="0"><table><thead><tr>{head}</tr></thead>'
            f"<tbody>{body}</tbody></table></div></section>"
        )

    def _citations(self, i: int, *, heading: bool) -> str:
        # Only the first citations list carries the ids, which must be unique in a page.
        anchor = not self.citations_anchored
        self.citations_anchored = True
        items = []
        for number, evidence_id, ev in self.cites.entries():
            li_id = f' id="cite-{number}"' if anchor else ""
            back = _backrefs(number, self.cites.uses.get(number, [])) if anchor else ""
            if ev is None:
                items.append(
                    f'<li{li_id} class="missing"><code>{_e(evidence_id)}</code> — '
                    f"⚠ not in the evidence table{back}</li>"
                )
                continue
            details = _e(", ".join(evidence_details(ev)))
            items.append(
                f"<li{li_id}><code>{_e(evidence_id)}</code> — {_e(ev.summary)} "
                f'<span class="details">({details})</span>{back}</li>'
            )
        title = "<h2>Citations</h2>" if heading else ""
        return f'<section class="block citations" id="b{i}">{title}<ol>{"".join(items)}</ol></section>'

    def _markers(self, i: int, ids: list[str]) -> str:
        return "".join(
            f'<sup class="cite"><a href="#cite-{n}" id="ref-{i}-{n}">[{n}]</a></sup>'
            for n in self.cites.numbers_for(ids)
        )


def _backrefs(number: int, uses: list[int]) -> str:
    """Links from a citation back to each block citing it: ``↩`` alone, or ``↩ a b c`` for several."""
    if not uses:
        return ""
    if len(uses) == 1:
        texts = ["↩"]
        lead = ""
    else:
        texts = [_letters(k) for k in range(len(uses))]
        lead = "↩ "
    links = " ".join(
        f'<a class="backref" href="#ref-{use}-{number}" aria-label="back to citing block {k + 1}">{text}</a>'
        for k, (use, text) in enumerate(zip(uses, texts, strict=True))
    )
    return f'<span class="backrefs">{lead}{links}</span>'


def _letters(k: int) -> str:
    """0 → a, 25 → z, 26 → aa: labels for back-links, as in Wikipedia's reference lists."""
    out = ""
    k += 1
    while k:
        k, rem = divmod(k - 1, 26)
        out = chr(ord("a") + rem) + out
    return out


def _badge(author: str) -> str:
    title = f"Written by {AUTHOR_NAMES.get(author, author)}"
    return (
        f'<div class="block-meta"><span class="badge author-{_e(author)}" title="{_e(title)}">{_e(author)}</span></div>'
    )


def _lines(text: str) -> str:
    """Escaped text with single newlines kept as line breaks."""
    return "<br>".join(_e(line) for line in text.strip().splitlines())


def _paragraphs_inline(text: str) -> str:
    return "<br>".join(_e(line) for line in text.strip().splitlines() if line.strip())


def _image_size(ref: ArtifactRef, data: bytes) -> tuple[int, int] | None:
    """Width and height for the <img> tag, so the page does not jump while images decode."""
    if ref.width and ref.height:
        return ref.width, ref.height
    try:
        with Image.open(io.BytesIO(data)) as img:
            return img.size
    except (OSError, SyntaxError, ValueError):
        # Not an image Pillow reads (e.g. SVG): let the browser size it.
        return None
