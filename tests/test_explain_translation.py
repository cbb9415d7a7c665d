"""A translation checkpoint in the explain server: the translation, the beam's candidates
with their scores, and every attention map (encoder, decoder, cross)."""

import numpy as np
import pytest
from starlette.testclient import TestClient

from chalklm.checkpoint import save_checkpoint
from chalklm.config import TransformerConfig
from chalklm.data.parallel import train_tokenizer
from chalklm.explain.app import make_app
from chalklm.explain.session import open_checkpoint
from chalklm.models.transformer import Transformer
from chalklm.translation.translator import Translator

PAIRS = [("ein roter hund", "a red dog"), ("eine grüne katze", "a green cat"),
         ("der blaue mond", "the blue moon")] * 10


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    import torch

    torch.manual_seed(0)
    tokenizer = train_tokenizer(PAIRS, vocab_size=300, progress=False)
    V = tokenizer.vocab_size
    config = TransformerConfig(src_vocab_size=V, tgt_vocab_size=V, n_layer_enc=2,
                               n_layer_dec=1, n_head=2, n_embd=16, ffn_dim=32, max_len=32,
                               dropout=0.0, pad_id=tokenizer.special.ids["<pad>"])
    folder = tmp_path_factory.mktemp("translate") / "run"
    save_checkpoint(folder, Transformer(config).state_dict(), config, tokenizer)
    return folder


@pytest.fixture(scope="module")
def client(folder):
    return TestClient(make_app(open_checkpoint(folder)))


def test_translate_gives_the_translators_answer_candidates_and_attention(client, folder):
    info = client.get("/api/info").json()
    assert info["kind"] == "transformer"
    result = client.post("/api/translate", json={"sentence": "ein roter hund",
                                                 "beam_size": 3}).json()
    own = Translator.from_checkpoint(folder).translate(["ein roter hund"], beam_size=3)[0]
    assert result["translation"] == own
    scores = [c["score"] for c in result["candidates"]]
    assert scores == sorted(scores, reverse=True) and result["candidates"][0]["text"] == own
    S, T = len(result["source_tokens"]), len(result["target_tokens"])
    att = result["attention"]
    assert len(att["encoder_self"]) == 2 and len(att["cross"]) == 1
    assert np.array(att["encoder_self"][0]).shape == (2, S, S)
    cross = np.array(att["cross"][0])
    assert cross.shape == (2, T, S)
    np.testing.assert_allclose(cross.sum(-1), 1, atol=1e-3)
    decoder = np.array(att["decoder_self"][0])
    assert decoder.shape == (2, T, T) and (decoder[:, 0, 1:] == 0).all()  # causal


@pytest.mark.parametrize("body,named", [({"sentence": ""}, "empty"),
                                        ({"sentence": "hund", "beam_size": 9}, "beam_size"),
                                        ({"sentence": "hund " * 40}, "max_len")])
def test_bad_translate_requests(client, body, named):
    response = client.post("/api/translate", json=body)
    assert response.status_code == 400 and named in response.json()["error"]


def test_gpt_routes_point_to_translate(client):
    response = client.post("/api/forward", json={"prompt": "ein"})
    assert response.status_code == 404 and "/api/translate" in response.json()["error"]


def test_the_page_shows_the_translation_and_its_attention_maps(folder):
    from chalklm.explain.browser import browser, open_page
    from chalklm.explain.serve import running_server

    with running_server(open_checkpoint(folder)) as url, browser() as chromium:
        page = open_page(chromium, url)
        page.wait_for_selector("body[data-translated='1']")
        page.fill("#sentence", "der blaue mond")
        page.click("#translate-form button")
        page.wait_for_selector("body[data-translated='2']")
        result = TestClient(make_app(open_checkpoint(folder))).post(
            "/api/translate", json={"sentence": "der blaue mond"}).json()
        assert page.text_content("#translation") == result["translation"]
        assert page.eval_on_selector_all("#candidates tr", "r => r.length") == \
            len(result["candidates"]) + 1
        sizes = page.eval_on_selector_all(
            "#translate-maps canvas.map", "cs => cs.map(c => [+c.dataset.rows, +c.dataset.cols])")
        S, T = len(result["source_tokens"]), len(result["target_tokens"])
        assert sizes == [[S, S]] * 4 + [[T, T]] * 2 + [[T, S]] * 2  # 2 heads per map
        page.screenshot(path=str(folder.parent / "translate.png"), full_page=True)
        assert page.problems == []
