"""Take the README's pictures of `chalklm explain` with the browser the tests use.

    python docs/screenshots.py --checkpoint runs/shakespeare_char [--out docs/images]

Starts an explain server on the checkpoint, opens the page in headless chromium
(chalklm/explain/browser.py: Debian's chromium, `apt-get install chromium`), types a
prompt, and saves one PNG per panel, plus the top of the page at a phone's width.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from chalklm.explain.browser import browser, open_page
from chalklm.explain.serve import running_server
from chalklm.explain.session import Explainer

PROMPT = "ROMEO:\nBut soft, what light"


def wait_for_run(page, prompt: str) -> None:
    ready = int(page.get_attribute("body", "data-ready"))
    page.fill("#prompt", prompt)
    page.click("#run")
    page.wait_for_selector(f"body[data-ready='{ready + 1}']")


def shoot(url: str, out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    saved = []
    with browser() as chromium:
        page = open_page(chromium, url)
        wait_for_run(page, PROMPT)

        def save(name, selector):
            path = out / f"explain-{name}.png"
            page.locator(selector).screenshot(path=str(path))
            saved.append(path)

        save("tokens", "#tokens-panel")
        save("embeddings", "#embed-panel")
        page.locator("details[data-layer='0'] .heads").scroll_into_view_if_needed()
        save("attention", "details[data-layer='0'] .heads")
        page.eval_on_selector("#temperature", "e => { e.value = 0.7; "
                              "e.dispatchEvent(new Event('input')); }")
        page.fill("#gen-count", "120")
        page.click("#generate")
        page.wait_for_selector("#generate:not([disabled])")
        save("output", "#output-panel")
        save("run", "#run-panel")
        for _ in range(20):
            page.click("#leaf-step")
        page.wait_for_function("document.querySelector('#leaf-net svg').textContent"
                               ".includes('∇')")
        save("leaf-flower", "#leaf-panel")
        phone = open_page(chromium, url, width=390, height=844)
        path = out / "explain-phone.png"
        phone.screenshot(path=str(path))
        saved.append(path)
    return saved


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True, help="a GPT checkpoint or run folder")
    parser.add_argument("--out", default=str(Path(__file__).parent / "images"),
                        help="where the PNG files go (default docs/images)")
    args = parser.parse_args()
    with running_server(Explainer(args.checkpoint)) as url:
        for path in shoot(url, Path(args.out)):
            print(path)


if __name__ == "__main__":
    main()
