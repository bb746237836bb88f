"""Headless Chromium for the browser tests, driven by Playwright against the system's Chromium.

Playwright is used only as a CDP driver (``executable_path``); no Playwright browser download is
needed or wanted. A missing Chromium or Playwright FAILS the tests with the line that fixes it: CI
installs both, and a skipped browser test would hide a broken report.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from playwright.sync_api import Browser

CHROMIUM_INSTALL = "apt-get update && apt-get install -y --no-install-recommends chromium"
PLAYWRIGHT_INSTALL = "pip install 'playwright==1.65.*'  (do not run `playwright install`)"

# Flags that work as root in a container, with nothing phoning home during a test.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]


def chromium_executable() -> str:
    """The system Chromium (``OKAFLOW_CHROMIUM`` overrides), or a test failure naming the install."""
    candidates = [os.environ.get("OKAFLOW_CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium")]
    for candidate in candidates:
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    pytest.fail(f"Chromium not found at /usr/bin/chromium; install it with: {CHROMIUM_INSTALL}", pytrace=False)


@pytest.fixture(scope="package")
def browser() -> Iterator[Browser]:
    """One headless Chromium for the browser tests, closed when they are done.

    Package scope, not session: Playwright's sync API keeps an event loop running on this thread, which
    would break every later ``asyncio.run`` in the session.

    ``launch()`` gives Chromium a fresh, empty temporary profile of its own and deletes it on close
    (Playwright refuses ``--user-data-dir`` in ``args`` for exactly that reason).
    """
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail(f"the browser tests need Playwright: {PLAYWRIGHT_INSTALL}", pytrace=False)
    executable = chromium_executable()
    with sync_playwright() as pw:
        launched = pw.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_ARGS, timeout=60_000)
        try:
            yield launched
        finally:
            launched.close()
