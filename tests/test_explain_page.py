"""The explain page in a real browser (headless chromium) on a tiny trained checkpoint:
type a prompt, then check what a learner sees and that the numbers behave."""

import pytest
from explain_checkpoint import make_tiny_checkpoint

from chalklm.explain.browser import browser, open_page
from chalklm.explain.serve import running_server
from chalklm.explain.session import Explainer

PROMPT = "JULIET: good"


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return make_tiny_checkpoint(tmp_path_factory.mktemp("page") / "run")


@pytest.fixture(scope="module")
def url(folder):
    with running_server(Explainer(folder)) as address:
        yield address


@pytest.fixture(scope="module")
def chromium():
    with browser() as b:
        yield b


@pytest.fixture
def page(chromium, url):
    page = open_page(chromium, url)
    yield page
    assert page.problems == []  # the console shows no errors
    page.close()


# each head's heat map: its size, the numbers above the diagonal, the colour drawn there
HEADS = """cs => cs.map(c => {
        const n = +c.dataset.rows, d = c.cells.data, above = [];
        for (let q = 0; q < n; q++) for (let k = q + 1; k < n; k++) above.push(d[q * n + k]);
        const px = n > 1 ? Array.from(c.getContext('2d').getImageData(n - 1, 0, 1, 1).data) : null;
        let rows = [];
        for (let q = 0; q < n; q++) rows.push(d.slice(q * n, q * n + n).reduce((s, v) => s + v, 0));
        return {rows: n, cols: +c.dataset.cols, cells: d.length, above, px, rowSums: rows};
})"""


def run_prompt(page, prompt):
    ready = int(page.get_attribute("body", "data-ready"))
    page.fill("#prompt", prompt)
    page.click("#run")
    page.wait_for_selector(f"body[data-ready='{ready + 1}']")


def bars(page):
    return page.eval_on_selector_all("#bars .bar",
                                     "bars => bars.map(b => [+b.dataset.id, +b.dataset.p])")


def chances_sum(page):
    return page.eval_on_selector("#bars", "b => b.chances.reduce((s, p) => s + p, 0)")


def set_range(page, selector, value):
    page.eval_on_selector(
        selector, "(e, v) => { e.value = v; e.dispatchEvent(new Event('input')); }", str(value))


def test_token_chips_heat_maps_and_bars(page):
    run_prompt(page, PROMPT)
    chips = page.eval_on_selector_all("#tokens .chip .t", "c => c.map(e => e.textContent)")
    assert chips == [c.replace(" ", "␣") for c in PROMPT]
    T = len(PROMPT)
    heads = page.eval_on_selector_all("details[data-layer='0'] .head canvas.map", HEADS)
    assert len(heads) == 2  # n_head
    for head in heads:
        assert head["rows"] == head["cols"] == T and head["cells"] == T * T
        assert all(v == 0 for v in head["above"])  # nothing above the diagonal
        assert head["px"] == [205, 205, 205, 255]  # drawn as the mask's grey
        assert all(abs(s - 1) < 5e-3 for s in head["rowSums"])
    shown = bars(page)
    assert len(shown) == 12 and chances_sum(page) == pytest.approx(1, abs=1e-6)
    each = page.eval_on_selector_all("#each-position .chip", "c => c.length")
    assert each == T  # a prediction after every token


def test_the_scores_switch_shows_query_key_scores_under_the_same_mask(page):
    run_prompt(page, PROMPT)
    page.check("#show-scores")
    heads = page.eval_on_selector_all("details[data-layer='0'] .head canvas.map", HEADS)
    assert len(heads) == 2
    for head in heads:
        assert head["px"] == [205, 205, 205, 255]  # later tokens still hidden
        assert any(abs(s - 1) > 1e-3 for s in head["rowSums"])  # scores, not chances


def test_temperature_redraws_the_bars_in_the_page(page):
    run_prompt(page, PROMPT)
    requests = []
    page.on("request", lambda r: requests.append(r.url))
    before = bars(page)
    set_range(page, "#temperature", 0.3)
    after = bars(page)
    assert after != before and after[0][1] > before[0][1]  # sharper: the top bar grows
    assert chances_sum(page) == pytest.approx(1, abs=1e-6)
    page.fill("#top-k", "3")
    page.dispatch_event("#top-k", "input")
    assert len([b for b in bars(page) if b[1] > 0]) == 3
    assert chances_sum(page) == pytest.approx(1, abs=1e-6)
    assert requests == []  # no round trip to the server


def test_the_pages_chances_are_generations_own(page, url):
    import httpx

    run_prompt(page, PROMPT)
    set_range(page, "#temperature", 0.5)
    set_range(page, "#top-p", 0.9)
    page.fill("#top-k", "5")
    page.dispatch_event("#top-k", "input")
    shown = {i: p for i, p in bars(page) if p > 0}
    asked = httpx.post(url + "api/next", json={"prompt": PROMPT, "temperature": 0.5,
                                               "top_k": 5, "top_p": 0.9}).json()
    expected = {c["id"]: c["prob"] for c in asked["candidates"]}  # generation.probabilities
    assert shown.keys() == expected.keys()
    for i, p in expected.items():
        assert shown[i] == pytest.approx(p, abs=1e-6)


def test_next_token_at_temperature_zero_appends_the_highest_bar(page):
    run_prompt(page, PROMPT)
    set_range(page, "#temperature", 0)
    top_id = max(bars(page), key=lambda b: b[1])[0]
    vocab = page.evaluate("fetch('/api/info').then(r => r.json()).then(i => i.vocab)")
    ready = int(page.get_attribute("body", "data-ready"))
    page.click("#next")
    page.wait_for_selector(f"body[data-ready='{ready + 1}']")
    assert page.input_value("#prompt") == PROMPT + vocab[top_id]
    assert page.eval_on_selector_all("#tokens .chip", "c => c.length") == len(PROMPT) + 1


def test_both_engines_show_the_same_numbers(page):
    run_prompt(page, PROMPT)
    fast = bars(page)
    ready = int(page.get_attribute("body", "data-ready"))
    page.select_option("#engine", "scratch")
    page.wait_for_selector(f"body[data-ready='{ready + 1}']")
    glass = bars(page)
    assert [b[0] for b in glass] == [b[0] for b in fast]
    assert [b[1] for b in glass] == pytest.approx([b[1] for b in fast], abs=1e-5)


def test_generate_streams_tokens(page):
    run_prompt(page, PROMPT)
    page.fill("#gen-count", "6")
    page.click("#generate")
    page.wait_for_function("document.querySelector('#generated .new')?.textContent.length === 6")
    page.wait_for_selector("#generate:not([disabled])")


def test_leaf_flower_reacts_to_its_sliders_and_trains(page):
    def sums():
        return page.eval_on_selector_all("#leaf-net svg text", "t => t.map(e => e.textContent)")

    before = sums()
    for i, value in enumerate([200, 40, 180, 40]):  # a bright, large flower
        set_range(page, f"#leaf-{i}", value)
    page.wait_for_function("(b) => document.querySelector('#leaf-net svg').textContent !== b",
                           arg="".join(before))
    assert sums() != before
    page.click("#leaf-step")
    page.wait_for_function("document.querySelector('#leaf-status').textContent.includes('loss')")
    page.wait_for_function("document.querySelector('#leaf-net svg').textContent.includes('∇')")


def test_usable_at_phone_width(chromium, url):
    page = open_page(chromium, url, width=390, height=844)
    width = page.evaluate("document.documentElement.scrollWidth")
    page.close()
    assert width <= 390


def test_the_loss_curves_follow_a_run_still_training(page, folder):
    def log(step):  # the trainer logs one more step (so the file is fresh: still training)
        with open(folder / "metrics.jsonl", "a") as metrics:
            metrics.write(f'{{"step": {step}, "train_loss": 1.5, "lr": 0.01}}\n')

    def shows(count, timeout=60_000):
        page.wait_for_function(
            f"document.querySelector('#curves').textContent.includes('{count} records')",
            timeout=timeout)

    records = sum(1 for _ in open(folder / "metrics.jsonl"))
    log(records + 1)
    page.reload()
    page.wait_for_selector("body[data-booted]")
    shows(records + 1)
    assert page.eval_on_selector_all("#curves polyline", "p => p.length") == 3  # train, val, lr
    log(records + 2)
    shows(records + 2)  # the page asked again by itself (every 5 s)


def test_a_bpe_token_shows_the_merges_that_built_it(chromium, tmp_path):
    from chalklm.checkpoint import save_checkpoint
    from chalklm.config import GPTConfig
    from chalklm.models import GPT
    from chalklm.tokenizers.bpe import BPETokenizer

    tokenizer = BPETokenizer.train("the cat sat on the mat; the cat ate. " * 20, vocab_size=270)
    config = GPTConfig(vocab_size=tokenizer.vocab_size, block_size=16, n_layer=1, n_head=1,
                       n_embd=8)
    save_checkpoint(tmp_path / "bpe", GPT(config).state_dict(), config, tokenizer)
    with running_server(Explainer(tmp_path / "bpe")) as address:
        page = open_page(chromium, address)
        run_prompt(page, "the cat")
        chips = page.locator(".chip.bpe")
        assert chips.count() >= 1
        chips.first.click()
        lines = page.eval_on_selector_all("#merges .tree li", "l => l.map(e => e.textContent)")
        page.close()
    assert len(lines) >= 3 and "merge" in lines[0]  # the token, then the two it joins, ...


def test_the_leaf_flower_demo_alone(chromium):
    with running_server(None) as address:  # chalklm explain --demo leaf-flower
        page = open_page(chromium, address)
        assert page.is_visible("#leaf-panel") and not page.is_visible("#prompt-panel")
        assert page.text_content("#leaf-winner").startswith("The larger output wins")
        problems = page.problems
        page.close()
    assert problems == []


def test_a_llama_design_model(chromium, tmp_path):
    from chalklm.checkpoint import save_checkpoint
    from chalklm.config import GPTConfig
    from chalklm.models import GPT
    from chalklm.tokenizers.char import CharTokenizer

    tokenizer = CharTokenizer("ROMEO: hello")
    config = GPTConfig(vocab_size=tokenizer.vocab_size, block_size=16, n_layer=1, n_head=2,
                       n_embd=8, norm="rmsnorm", mlp="swiglu", bias=False,
                       positional="rope", n_kv_head=1, qk_norm=True)
    save_checkpoint(tmp_path / "llama", GPT(config).state_dict(), config, tokenizer)
    with running_server(Explainer(tmp_path / "llama")) as address:
        page = open_page(chromium, address)
        headings = page.eval_on_selector_all("details[data-layer='0'] h3",
                                             "h => h.map(e => e.textContent)")
        notes = page.text_content("details[data-layer='0'] .llama")
        heads = page.eval_on_selector_all("details[data-layer='0'] .head", "h => h.length")
        problems = page.problems
        page.close()
    assert "ln_1: RMS normalization" in headings
    assert any("SwiGLU" in h for h in headings) and problems == []
    assert "RoPE" in notes and "serves 2 query heads" in notes and "qk_norm" in notes
    assert heads == 2  # one map per query head
