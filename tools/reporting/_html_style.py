"""The stylesheet inlined into every HTML report (no external fonts, files or requests).

Screen: one readable column, tables scroll sideways inside their own box instead of widening the page,
long unbroken strings (URLs, ids) wrap anywhere. Print: no backgrounds lost (warnings and labels keep
their colours), figures and table rows are not split across pages, tables are fitted to the page.
"""

from __future__ import annotations

__all__ = ["REPORT_CSS"]

REPORT_CSS = """
:root {
  --ink: #1b1f24; --muted: #57606a; --line: #d0d7de; --paper: #ffffff; --desk: #eef1f4;
  --okaflow: #0b5cad; --okaflow-bg: #e8f1fb; --evidence: #1a7f37; --evidence-bg: #e6f4ea;
  --model: #6f3fc7; --model-bg: #f1ebfb; --warn-ink: #5a3a00; --warn-bg: #fff4d1; --warn-line: #c98a00;
  --synthetic: #b3261e; --synthetic-bg: #fdeeed;
  color-scheme: light;
}
*, *::before, *::after { box-sizing: border-box; }
html { -webkit-text-size-adjust: 100%; text-size-adjust: 100%; }
body {
  margin: 0; background: var(--desk); color: var(--ink);
  font: 16px/1.55 system-ui, -apple-system, "Segoe UI", Roboto, "Noto Sans", "Liberation Sans",
    Arial, sans-serif;
}
.page {
  max-width: 54rem; margin: 0 auto; padding: 1.5rem clamp(0.9rem, 4vw, 2.5rem) 2.5rem;
  background: var(--paper);
}
h1, h2, h3, h4, p, li, dd, dt, figcaption, th, td, blockquote, code { overflow-wrap: anywhere; }
h1 { font-size: 1.7rem; line-height: 1.25; margin: 0.2rem 0 0.8rem; }
h2 { font-size: 1.3rem; margin: 2rem 0 0.6rem; padding-bottom: 0.2rem; border-bottom: 1px solid var(--line); }
h3 { font-size: 1.1rem; margin: 1.5rem 0 0.5rem; }
h4 { font-size: 1rem; margin: 1.2rem 0 0.4rem; }
a { color: var(--okaflow); }
code {
  font-family: ui-monospace, "SFMono-Regular", "DejaVu Sans Mono", Menlo, Consolas, monospace;
  font-size: 0.88em;
}
.report-header { border-bottom: 3px solid var(--ink); padding-bottom: 0.9rem; margin-bottom: 1.2rem; }
.kicker {
  margin: 0; font-size: 0.75rem; font-weight: 700; letter-spacing: 0.08em; text-transform: uppercase;
  color: var(--muted);
}
.meta {
  display: grid; grid-template-columns: max-content minmax(0, 1fr); gap: 0.1rem 1rem; margin: 0;
  font-size: 0.9rem;
}
.meta dt { font-weight: 600; color: var(--muted); }
.meta dd { margin: 0; min-width: 0; }
.no-model {
  margin: 1rem 0; padding: 0.8rem 1rem; border: 2px solid var(--synthetic); border-left-width: 8px;
  background: var(--synthetic-bg); color: #5f1410;
}
.no-model strong { display: block; font-size: 1.1rem; }
.block { margin: 1.1rem 0; min-width: 0; }
.block-meta { margin-bottom: 0.25rem; }
.badge {
  display: inline-block; font-size: 0.68rem; font-weight: 700; letter-spacing: 0.05em;
  text-transform: uppercase; padding: 0.05rem 0.5rem; border-radius: 999px; border: 1px solid currentColor;
  line-height: 1.5;
}
.badge.author-okaflow { color: var(--okaflow); background: var(--okaflow-bg); }
.badge.author-evidence-only { color: var(--evidence); background: var(--evidence-bg); }
.badge.author-model { color: var(--model); background: var(--model-bg); }
.text.author-model { border-left: 3px solid var(--model); padding-left: 0.8rem; }
.text.author-evidence-only { border-left: 3px solid var(--evidence); padding-left: 0.8rem; }
.text p { margin: 0.4rem 0; }
sup.cite { font-size: 0.72em; line-height: 0; margin-left: 0.1em; }
sup.cite a { text-decoration: none; font-weight: 600; }
.prov { margin: 0.3rem 0 0; font-size: 0.76rem; color: var(--muted); }
.prov.missing { color: var(--synthetic); }
.flags { margin: 0.5rem 0; }
.flag {
  margin: 0.35rem 0; padding: 0.45rem 0.75rem; border: 1px solid var(--warn-line); border-left-width: 6px;
  background: var(--warn-bg); color: var(--warn-ink); font-size: 0.92rem;
}
.flag strong { display: block; }
.notice {
  margin: 1rem 0; padding: 0.6rem 1rem; border-left: 5px solid var(--okaflow); background: var(--okaflow-bg);
}
.notice.warning { border-left-color: var(--warn-line); background: var(--warn-bg); color: var(--warn-ink); }
.notice p { margin: 0.2rem 0; }
figure.block {
  margin: 1.4rem 0; padding: 0.75rem; border: 1px solid var(--line); border-radius: 6px;
  background: var(--paper);
}
figure.block img {
  display: block; margin: 0 auto; max-width: 100%; max-height: 80vh; width: auto; height: auto;
  background: #000;
}
figure.block.figure img { background: transparent; }
figcaption { margin-top: 0.5rem; font-size: 0.9rem; }
figure.generated { border: 3px dashed var(--synthetic); background: var(--synthetic-bg); }
.synthetic-label {
  display: inline-block; margin: 0 0.4rem 0.2rem 0; padding: 0.1rem 0.5rem; background: #000; color: #fff;
  font-weight: 700; letter-spacing: 0.03em; border-bottom: 2px solid #ffc800;
}
.table-block .table-title { margin: 0 0 0.4rem; font-weight: 600; }
.table-wrap { max-width: 100%; overflow-x: auto; border: 1px solid var(--line); border-radius: 4px; }
/* max-content + a cell max-width: columns as wide as their text up to a limit, then wrapping; the
   wrapper scrolls when the sum is wider than the page. */
table { border-collapse: collapse; width: max-content; min-width: 100%; font-size: 0.88rem; }
th, td {
  padding: 0.35rem 0.6rem; border: 1px solid var(--line); text-align: left; vertical-align: top;
  min-width: 6rem; max-width: 22rem;
}
thead th { background: #f3f5f7; }
tbody tr:nth-child(even) td { background: #fafbfc; }
.citations ol { padding-left: 2rem; }
.citations li { margin: 0.3rem 0; }
.citations li:target { background: #fff8c5; }
.citations .details { color: var(--muted); font-size: 0.85rem; }
.citations .missing { color: var(--warn-ink); background: var(--warn-bg); }
.backrefs { margin-left: 0.3rem; font-size: 0.85rem; color: var(--muted); }
.backref { text-decoration: none; margin-left: 0.15rem; }
footer {
  margin-top: 2.5rem; padding-top: 0.6rem; border-top: 1px solid var(--line); font-size: 0.78rem;
  color: var(--muted);
}
@page { margin: 14mm 12mm; }
@media print {
  body { background: #fff; font-size: 10.5pt; }
  .page { max-width: none; margin: 0; padding: 0; }
  * { -webkit-print-color-adjust: exact; print-color-adjust: exact; }
  h1, h2, h3, h4 { break-after: avoid; page-break-after: avoid; }
  figure.block, .flag, .notice, .no-model, tr, .citations li, .text p {
    break-inside: avoid; page-break-inside: avoid;
  }
  figure.block img { max-height: 120mm; }
  .table-wrap { overflow: visible; border: 0; }
  table { table-layout: fixed; width: 100%; }
  th, td { min-width: 0; max-width: none; overflow-wrap: anywhere; }
  thead { display: table-header-group; }
  a { color: inherit; text-decoration: none; }
  .backrefs { display: none; }
}
""".strip()
