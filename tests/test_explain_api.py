"""The explain server's JSON API: every endpoint, every bad input a 4xx naming it, two
clients at once, and the command that starts and stops it."""

import json
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from explain_checkpoint import make_tiny_checkpoint
from starlette.testclient import TestClient

from chalklm.explain.app import make_app
from chalklm.explain.encode import decode_array
from chalklm.explain.session import Explainer

PROMPT = "ROMEO: hello"


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return make_tiny_checkpoint(tmp_path_factory.mktemp("explain") / "run")


@pytest.fixture(scope="module")
def client(folder):
    return TestClient(make_app(Explainer(folder)))


def test_info_names_the_model_and_its_vocabulary(client):
    info = client.get("/api/info").json()
    assert info["kind"] == "gpt" and info["config"]["n_layer"] == 2
    assert len(info["vocab"]) == info["config"]["vocab_size"] and "R" in info["vocab"]


def test_tokens_are_the_tokenizers(client):
    tokens = client.post("/api/tokens", json={"prompt": PROMPT}).json()
    assert "".join(t["text"] for t in tokens["tokens"]) == PROMPT
    assert tokens["code"] == "chalklm/tokenizers/char.py CharTokenizer"


@pytest.mark.parametrize("engine", ["torch", "scratch"])
def test_forward_gives_every_intermediate(client, engine):
    result = client.post("/api/forward", json={"prompt": PROMPT, "engine": engine}).json()
    T = len(PROMPT)
    assert result["engine"] == engine and result["tokens"] == list(PROMPT)
    assert decode_array(result["embedding"]["sum"]).shape == (T, 16)
    assert len(result["layers"]) == 2
    weights = decode_array(result["layers"][1]["attention"]["weights"])
    assert weights.shape == (2, T, T)
    np.testing.assert_allclose(weights.sum(-1), 1.0, atol=5e-3)  # float16 on the wire
    V = client.get("/api/info").json()["config"]["vocab_size"]
    assert len(result["last_logits"]) == V
    out = result["output"]
    assert decode_array(out["probs"]).shape == (V,)
    assert decode_array(out["probs"]).sum() == pytest.approx(1, abs=1e-2)
    assert np.array(out["top_ids"]).shape == (T, 5) and len(out["top_texts"]) == T
    assert out["top_ids"][-1][0] == int(np.argmax(result["last_logits"]))


def test_both_engines_answer_the_same_over_the_api(client):
    fast, glass = (client.post("/api/forward", json={"prompt": PROMPT, "engine": e,
                                                     "encoding": "lists"}).json()
                   for e in ("torch", "scratch"))
    np.testing.assert_allclose(fast["last_logits"], glass["last_logits"], atol=1e-5)
    scores = fast["layers"][0]["ln_1"]["out"]
    np.testing.assert_allclose(scores, glass["layers"][0]["ln_1"]["out"], rtol=2e-3, atol=1e-4)


def test_next_token_chances_follow_the_controls(client):
    wide = client.post("/api/next", json={"prompt": PROMPT, "temperature": 2.0}).json()
    narrow = client.post("/api/next", json={"prompt": PROMPT, "temperature": 0.5,
                                            "top_k": 3}).json()
    greedy = client.post("/api/next", json={"prompt": PROMPT, "greedy": True}).json()
    assert len(narrow["candidates"]) == 3
    assert narrow["candidates"][0]["prob"] > wide["candidates"][0]["prob"]
    assert greedy["candidates"][0]["id"] == greedy["greedy"] == int(np.argmax(greedy["logits"]))
    nucleus = client.post("/api/next", json={"prompt": PROMPT, "top_p": 0.5}).json()
    assert sum(c["prob"] for c in nucleus["candidates"]) == pytest.approx(1.0)


def test_generate_streams_one_json_line_per_token(client, folder):
    with client.stream("POST", "/api/generate", json={"prompt": PROMPT, "max_new_tokens": 7,
                                                      "greedy": True}) as response:
        assert response.headers["content-type"].startswith("application/x-ndjson")
        lines = [json.loads(line) for line in response.iter_lines() if line]
    assert len(lines) == 7 and all(set(item) == {"id", "text"} for item in lines)
    from chalklm import generation  # the same tokens as generating directly, greedy
    model, tokenizer = generation.load(folder)
    ids = generation.generate(model, [tokenizer.encode(PROMPT)], 7, temperature=0)[0]
    assert [item["id"] for item in lines] == ids[-7:]


def test_metrics_and_polling_for_new_records(client):
    first = client.get("/api/metrics").json()
    assert first["count"] == 40 and first["records"][0]["step"] == 1
    assert "val_loss" in first["records"][9]
    assert client.get("/api/metrics?since=38").json()["records"][0]["step"] == 39


BAD = [
    ("/api/forward", b"{", 400, "malformed JSON"),
    ("/api/forward", b"[1, 2]", 400, "JSON object"),
    ("/api/forward", b'{"prompt": ""}', 400, "empty"),
    ("/api/forward", b'{"prompt": 7}', 400, "'prompt' must be a string"),
    ("/api/forward", b'{"prompt": "ROMEO: \xc3\xa9"}', 400, "lacks"),
    ("/api/forward", json.dumps({"prompt": "ROMEO " * 5}).encode(), 400, "block_size"),
    ("/api/forward", b'{"prompt": "R", "engine": "gpu"}', 400, "'engine'"),
    ("/api/forward", b'{"prompt": "R", "encoding": "xml"}', 400, "'encoding'"),
    ("/api/tokens", b'{"prompt": "ROMEO: Z"}', 400, "'Z'"),
    ("/api/next", b'{"prompt": "R", "temperature": 0}', 400, "'temperature'"),
    ("/api/next", b'{"prompt": "R", "temperature": -1}', 400, "'temperature'"),
    ("/api/next", b'{"prompt": "R", "temperature": "hot"}', 400, "'temperature'"),
    ("/api/next", b'{"prompt": "R", "top_p": 0}', 400, "'top_p'"),
    ("/api/next", b'{"prompt": "R", "top_p": 1.5}', 400, "'top_p'"),
    ("/api/next", b'{"prompt": "R", "top_k": 0}', 400, "'top_k'"),
    ("/api/generate", b'{"prompt": "R", "max_new_tokens": 501}', 400, "'max_new_tokens'"),
    ("/api/generate", b'{"prompt": "R", "max_new_tokens": 2.5}', 400, "'max_new_tokens'"),
    ("/api/generate", b'{"prompt": "R", "temperature": 0}', 400, "'temperature'"),
    ("/api/generate", b'{"prompt": ""}', 400, "empty"),
    ("/api/forward", b'{"prompt": "' + b"R" * 70000 + b'"}', 413, "limit"),
    ("/api/forward", b"[" * 20000 + b"]" * 20000, 400, "nests"),
    ("/api/forward", b'{"prompt": "R\\ud800"}', 400, "surrogate"),
    ("/api/leaf-flower/forward", b'{"inputs": [1, 2]}', 400, "'inputs'"),
    ("/api/leaf-flower/forward", b'{"inputs": [1, 2, 3, 4], "weights": {"x": 1}}', 400,
     "hidden.weight"),
    ("/api/leaf-flower/step", b'{"lr": -1}', 400, "'lr'"),
]


@pytest.mark.parametrize("path,body,status,named", BAD)
def test_bad_requests_get_a_4xx_naming_the_problem(client, path, body, status, named):
    response = client.post(path, content=body, headers={"content-type": "application/json"})
    assert response.status_code == status
    assert named in response.json()["error"]


def test_unknown_paths_wrong_methods_and_bad_queries_are_json_4xx(client):
    assert client.get("/api/nothing").status_code == 404
    assert client.get("/api/forward").status_code == 405
    assert client.get("/api/metrics?since=-1").status_code == 400
    assert "error" in client.get("/api/nothing").json()


def test_no_request_names_a_file(client):
    response = client.post("/api/forward", json={"prompt": "R", "checkpoint": "/etc"})
    assert response.status_code == 200  # unknown fields change nothing: the model is fixed
    assert client.get("/../pyproject.toml").status_code == 404


def test_two_clients_at_once_get_their_own_answers(client):
    prompts = ["ROMEO: h", "JULIET: good", "ROMEO: my love", "good night"] * 3
    engines = ["torch", "scratch"] * 6
    alone = {(p, e): client.post("/api/next", json={"prompt": p, "engine": e}).json()["logits"]
             for p, e in zip(prompts, engines)}

    def ask(pair):
        prompt, engine = pair
        if engine == "scratch":  # the leaf network shares the glass box meanwhile
            client.post("/api/leaf-flower/step", json={})
        return client.post("/api/next", json={"prompt": prompt, "engine": engine}).json()["logits"]

    with ThreadPoolExecutor(6) as pool:
        together = list(pool.map(ask, zip(prompts, engines)))
    for pair, logits in zip(zip(prompts, engines), together):
        np.testing.assert_allclose(logits, alone[pair], atol=1e-5)


def test_leaf_flower_forward_and_one_step():
    client = TestClient(make_app(None))  # --demo leaf-flower: no checkpoint
    start = client.get("/api/leaf-flower").json()
    assert start["task"]["inputs"] == ["R", "G", "B", "volume"]
    out = client.post("/api/leaf-flower/forward", json={"inputs": [40, 180, 50, 8],
                                                        "weights": start["weights"]}).json()
    hidden = np.tanh(np.array(out["scaled"]) @ np.array(start["weights"]["hidden.weight"])
                     + start["weights"]["hidden.bias"])
    np.testing.assert_allclose(out["hidden"], hidden, atol=1e-6)
    assert out["winner"] == int(np.argmax(out["outputs"]))
    step = client.post("/api/leaf-flower/step", json={"weights": start["weights"]}).json()
    moved = np.array(step["weights"]["output.bias"]) - np.array(start["weights"]["output.bias"])
    np.testing.assert_allclose(moved, -step["lr"] * np.array(step["gradients"]["output.bias"]),
                               atol=1e-6)
    assert step["loss_after"] < step["loss"]
    assert client.post("/api/forward", json={"prompt": "R"}).status_code == 404


def run_cli(*args, timeout=60):
    return subprocess.run([sys.executable, "-m", "chalklm", "explain", *args],
                          capture_output=True, text=True, timeout=timeout)


def test_a_missing_checkpoint_is_one_line_and_exit_2(tmp_path):
    result = run_cli("--checkpoint", str(tmp_path / "nothing"))
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert "no such checkpoint folder" in result.stderr
    assert run_cli("--demo", "leaf-flower", "--port", "70000").returncode == 2


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM])
def test_the_server_prints_its_address_and_stops_cleanly(folder, stop):
    process = subprocess.Popen([sys.executable, "-m", "chalklm", "explain", "--checkpoint",
                                str(folder)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        line = process.stdout.readline()
        url = line.split("open ")[1].split()[0]
        assert url.startswith("http://127.0.0.1:")
        import httpx

        for _ in range(100):  # the socket is bound before the line; uvicorn starts serving
            try:
                assert httpx.get(url + "api/info").json()["kind"] == "gpt"
                break
            except httpx.TransportError:
                time.sleep(0.1)
        process.send_signal(stop)
        out, err = process.communicate(timeout=30)
    finally:
        process.kill()
    assert process.returncode == 0, err
    assert "stopped" in out and "Traceback" not in err


def test_bpe_tokens_carry_the_merges_that_built_them(tmp_path):
    from chalklm.checkpoint import save_checkpoint
    from chalklm.config import GPTConfig
    from chalklm.models import GPT
    from chalklm.tokenizers.bpe import BPETokenizer

    text = "the cat sat on the mat; the cat ate the rat. " * 20
    tokenizer = BPETokenizer.train(text, vocab_size=280)
    config = GPTConfig(vocab_size=tokenizer.vocab_size, block_size=16, n_layer=1, n_head=1,
                       n_embd=8)
    save_checkpoint(tmp_path / "bpe", GPT(config).state_dict(), config, tokenizer)
    client = TestClient(make_app(Explainer(tmp_path / "bpe")))
    tokens = client.post("/api/tokens", json={"prompt": "the cat"}).json()["tokens"]
    assert "".join(t["text"] for t in tokens) == "the cat" and len(tokens) < 7

    def leaves(node):
        return [node["id"]] if "parts" not in node else sum(map(leaves, node["parts"]), [])

    merged = [t for t in tokens if "parts" in t["merges"]]
    assert merged  # "the" and " cat" are learned merges, not single bytes
    for token in merged:
        assert bytes(leaves(token["merges"])).decode() == token["text"]


def test_listening_beyond_this_machine_is_warned_about():
    process = subprocess.Popen([sys.executable, "-m", "chalklm", "explain", "--demo",
                                "leaf-flower", "--host", "0.0.0.0"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        warning = process.stderr.readline()
        address = process.stdout.readline()
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=30)
    finally:
        process.kill()
    assert "warning: listening on 0.0.0.0" in warning and "http://0.0.0.0:" in address
    assert process.returncode == 0


ODD = [None, True, -1, 0, 1.5, 10**30, float("inf"), "x", "", [], {}, [1, 2, 3, 4]]
FIELDS = {"/api/forward": ["prompt", "engine", "encoding"],
          "/api/tokens": ["prompt"],
          "/api/next": ["prompt", "temperature", "top_k", "top_p", "greedy"],
          "/api/generate": ["prompt", "max_new_tokens", "seed", "temperature", "top_p"],
          "/api/leaf-flower/forward": ["inputs", "weights"],
          "/api/leaf-flower/step": ["weights", "lr"]}


@pytest.mark.parametrize("path", FIELDS)
def test_odd_values_in_any_field_are_never_a_500(client, path):
    for field in FIELDS[path]:
        for value in ODD:
            body = {"prompt": "ROMEO", "inputs": [1, 2, 3, 4], "max_new_tokens": 2} | \
                {field: value}
            response = client.post(path, content=json.dumps(body),
                                   headers={"content-type": "application/json"})
            assert response.status_code < 500, (field, value, response.text)
            assert response.status_code == 200 or "error" in response.json()


def test_a_local_server_answers_only_requests_for_this_machine():
    app = make_app(None, local_only=True)
    assert TestClient(app, base_url="http://127.0.0.1:8000").get("/api/info").status_code == 200
    assert TestClient(app, base_url="http://localhost").get("/api/info").status_code == 200
    rebound = TestClient(app, base_url="http://attacker.example")  # DNS rebinding
    assert rebound.get("/api/info").status_code == 400
