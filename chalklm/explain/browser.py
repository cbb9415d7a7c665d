"""A real browser for the explain page's tests and screenshots (tests/test_explain_page.py,
docs/screenshots.py): Debian's chromium, headless, driven by Playwright's Python package
(its own browser download is not used; install with `apt-get install chromium`), and an
explain server on a free local port in a thread of this process."""

from __future__ import annotations

import contextlib
import threading
import time

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@contextlib.contextmanager
def running_server(explainer):
    """http://127.0.0.1:PORT/ of an explain server for `explainer` (None: leaf/flower only)."""
    import uvicorn

    from chalklm.explain.app import make_app
    from chalklm.explain.serve import address, bind

    sock = bind("127.0.0.1", 0)
    app = make_app(explainer, local_only=True)  # as `chalklm explain` serves it
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    try:
        yield address(sock)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


@contextlib.contextmanager
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield chromium
        finally:
            chromium.close()
