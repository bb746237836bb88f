"""The report as PDF, printed by headless Chromium from the self-contained ``report.html``.

No Python PDF stack renders the report's HTML and CSS faithfully; a browser does. okaflow runs the
Chromium binary (``$OKAFLOW_CHROMIUM``, else ``chromium``/``chromium-browser``/``google-chrome`` on PATH)
as a subprocess with ``--print-to-pdf``, offline (the HTML embeds its images), bounded in time.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from okaflow._constants import ENV_CHROMIUM, PDF_TIMEOUT_S
from okaflow._errors import ConfigurationError

__all__ = ["find_chromium", "render_pdf"]

# Chromium's sandbox refuses to start as root (containers, CI); as any other user it stays on.
_NO_SANDBOX_AS_ROOT = ("--no-sandbox",) if hasattr(os, "geteuid") and os.geteuid() == 0 else ()
_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_chromium() -> str | None:
    """The Chromium (or Chrome) executable okaflow prints with, or None.

    Raises:
        ConfigurationError: ``$OKAFLOW_CHROMIUM`` names something that is not a file.
    """
    configured = os.environ.get(ENV_CHROMIUM)
    if configured:
        if not Path(configured).is_file():
            raise ConfigurationError(
                f"${ENV_CHROMIUM} is {configured!r}, which is not a file", hint="point it at the chromium executable"
            )
        return configured
    return next((found for name in _NAMES if (found := shutil.which(name))), None)


def render_pdf(html: str | Path, pdf: str | Path | None = None, *, timeout: float = PDF_TIMEOUT_S) -> Path:
    """Print an HTML report (``report.html``) to PDF; the PDF's path (default beside it, ``report.pdf``).

    Raises:
        ConfigurationError: no Chromium on this machine, or it failed or timed out (its output quoted).
    """
    source = Path(html).resolve()
    target = Path(pdf) if pdf is not None else source.with_suffix(".pdf")
    browser = find_chromium()
    if browser is None:
        raise ConfigurationError(
            "printing the report to PDF needs Chromium, and none was found",
            hint=f"install it (Debian: apt-get install chromium) or set ${ENV_CHROMIUM} to its executable",
        )
    # A PDF left from before must not pass for this one if Chromium exits 0 without writing.
    target.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="okaflow-pdf-") as profile:
        command = [
            browser,
            "--headless",
            *_NO_SANDBOX_AS_ROOT,
            "--disable-gpu",
            "--no-pdf-header-footer",
            f"--user-data-dir={profile}",
            f"--print-to-pdf={target.resolve()}",
            source.as_uri(),
        ]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            raise ConfigurationError(f"Chromium did not print {source} within {timeout:g} s") from None
    if done.returncode != 0 or not target.is_file() or _head(target) != b"%PDF-":
        raise ConfigurationError(
            f"Chromium could not print {source} to PDF (exit {done.returncode}): {done.stderr.strip()[-400:]}",
            hint=f"check that {browser} starts headless on this machine (or point $OKAFLOW_CHROMIUM at one that does)",
        )
    return target


def _head(path: Path) -> bytes:
    with path.open("rb") as fh:
        return fh.read(5)
