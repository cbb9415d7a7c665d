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


# A loaded 2-core machine can take many seconds to load the page and run a model: a
# generous limit for every wait, so slowness is never read as failure.
TIMEOUT_MS = 120_000


def open_page(chromium, url: str, width: int = 1280, height: int = 800):
    """A tab at `url`, once the page has started (`body[data-booted]`). Console errors and
    uncaught exceptions are collected in `page.problems`."""
    page = chromium.new_page(viewport={"width": width, "height": height})
    page.set_default_timeout(TIMEOUT_MS)
    page.problems = []
    page.on("console", lambda m: m.type == "error" and page.problems.append(m.text))
    page.on("pageerror", lambda e: page.problems.append(str(e)))
    page.goto(url)
    page.wait_for_selector("body[data-booted]")
    return page
