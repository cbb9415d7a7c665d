"""A real browser for the explain page's tests and screenshots (tests/test_explain_page.py,
docs/screenshots.py): Debian's chromium, headless, driven by Playwright's Python package
(its own browser download is not used; install with `apt-get install chromium`). The
server they look at: serve.py `running_server`."""

from __future__ import annotations

import contextlib

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@contextlib.contextmanager
def browser():
    """Headless chromium (Playwright's Browser): `browser.new_page()` opens a tab."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield chromium
        finally:
            chromium.close()
