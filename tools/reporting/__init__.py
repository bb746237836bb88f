"""The interleaved report and its renderers.

Build a :class:`Report` from typed blocks, store images with :class:`ArtifactStore`, label generated
images with :func:`stamp_label`, draw lab trends with :func:`plot_observation_trend`, and write the
report as JSON, Markdown and a self-contained HTML page with :func:`write_report`.
"""

from okaflow.tools.reporting._artifacts import ArtifactStore, png_bytes
from okaflow.tools.reporting._html import render_html
from okaflow.tools.reporting._labels import LabelLayout, label_layout, stamp_label
from okaflow.tools.reporting._markdown import render_markdown
from okaflow.tools.reporting._model import (
    ArtifactRef,
    Author,
    Block,
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
    block_cites,
)
from okaflow.tools.reporting._pdf import find_chromium, render_pdf
from okaflow.tools.reporting._plots import (
    PANEL_CELL_SIZE,
    TREND_SIZE,
    parse_fhir_datetime,
    plot_observation_panel,
    plot_observation_trend,
)
from okaflow.tools.reporting._render_common import NO_MODEL_NOTICE
from okaflow.tools.reporting._writer import REPORT_FILES, render_json, write_report

__all__ = [
    "NO_MODEL_NOTICE",
    "PANEL_CELL_SIZE",
    "REPORT_FILES",
    "TREND_SIZE",
    "ArtifactRef",
    "ArtifactStore",
    "Author",
    "Block",
    "CitationsBlock",
    "FigureBlock",
    "GeneratedImageBlock",
    "HeadingBlock",
    "ImageBlock",
    "LabelLayout",
    "NoticeBlock",
    "Report",
    "TableBlock",
    "TextBlock",
    "VerificationFlag",
    "block_cites",
    "find_chromium",
    "label_layout",
    "parse_fhir_datetime",
    "plot_observation_panel",
    "plot_observation_trend",
    "png_bytes",
    "render_html",
    "render_json",
    "render_markdown",
    "render_pdf",
    "stamp_label",
    "write_report",
]
