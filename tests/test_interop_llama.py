"""Llama-family folders in and out, checked against transformers and tokenizers.

Every folder is written here by transformers' own save_pretrained (random weights, real
configurations) and every tokenizer is trained here by the tokenizers library, so the
loading code under test is the one a user runs on a downloaded SmolLM2 or Llama 3.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from hf_llama import (
    SMOLLM2_135M,
    SMOLLM2_TEMPLATE,
    TINY,
    llama_folder,
    llama_model,
    save_tokenizer,
    train_tokenizer,
)
from test_tokenizer_interop import CASES

import chalklm
from chalklm.checkpoint import load_config, load_tokenizer, load_weights, save_checkpoint
from chalklm.cli import main
from chalklm.config import GPTConfig
from chalklm.errors import CheckpointError, ConfigError, ShapeError, TokenizerError
from chalklm.interop import export_hf, import_hf
from chalklm.interop.llama import config_from_llama
from chalklm.models import GPT
from chalklm.tokenizers import BPETokenizer


def logits_of(checkpoint, ids: torch.Tensor) -> torch.Tensor:
    model, _ = chalklm.load(checkpoint)
    with torch.no_grad():
        return model(ids)[0]


def assert_same_logits(checkpoint, hf, ids, atol=1e-4):
    with torch.no_grad():
        expected = hf(ids).logits
    ours = logits_of(checkpoint, ids)
    assert expected.std() > 1e-3  # not a degenerate model that would hide a mistake
    torch.testing.assert_close(ours, expected, atol=atol, rtol=0)


@pytest.mark.parametrize("tied", [False, True])
def test_a_tiny_llama_imports_with_transformers_logits(tmp_path, tied):
    hf = llama_folder(tmp_path / "hf", **{**TINY, "tie_word_embeddings": tied})
    result = import_hf(tmp_path / "hf", tmp_path / "ck")
    config = load_config(tmp_path / "ck")
    assert result.kind == "LlamaForCausalLM"
    assert (config.norm, config.positional, config.mlp, config.bias) == \
        ("rmsnorm", "rope", "swiglu", False)
    assert (config.n_kv_head, config.ffn_dim, config.rope_theta, config.tie_embeddings) == \
        (2, 96, 100000.0, tied)
    ids = torch.randint(0, TINY["vocab_size"], (2, 17), generator=torch.Generator().manual_seed(1))
    assert_same_logits(tmp_path / "ck", hf, ids)


def test_smollm2_135m_shape_imports_with_transformers_logits(tmp_path):
    """SmolLM2-135M's configuration (30 layers, 576 wide, 9 heads, 3 kv heads, tied), random
    weights, in transformers' bf16-free fp32: every logit within 1e-4."""
    hf = llama_folder(tmp_path / "hf", **SMOLLM2_135M)
    import_hf(tmp_path / "hf", tmp_path / "ck")
    config = load_config(tmp_path / "ck")
    assert (config.n_layer, config.n_embd, config.n_head, config.kv_heads, config.hidden_size,
            config.vocab_size, config.tie_embeddings) == (30, 576, 9, 3, 1536, 49152, True)
    ids = torch.tensor([[1, 17, 400, 9000, 49151, 3, 77, 12345]])
    assert_same_logits(tmp_path / "ck", hf, ids)


def test_greedy_continuations_equal_transformers_generate(tmp_path):
    hf = llama_folder(tmp_path / "hf", seed=3, **{**TINY, "initializer_range": 0.2})
    import_hf(tmp_path / "hf", tmp_path / "ck")
    model, _ = chalklm.load(tmp_path / "ck")
    prompt = [5, 81, 300, 7, 999, 42]
    ours = chalklm.generate(model, prompt, 30, temperature=0)[0]
    hf.generation_config.eos_token_id = None  # random weights: do not stop at token 2
    expected = hf.generate(torch.tensor([prompt]), max_new_tokens=30, do_sample=False,
                           attention_mask=torch.ones(1, len(prompt), dtype=torch.long))
    assert ours == expected[0, len(prompt):].tolist()
    assert len(set(ours)) > 3  # the continuation moves: an honest comparison


def test_a_model_saved_in_shards_imports(tmp_path):
    hf = llama_folder(tmp_path / "hf", save={"max_shard_size": "100KB"}, **TINY)
    assert len(list((tmp_path / "hf").glob("model-*.safetensors"))) > 1
    assert (tmp_path / "hf" / "model.safetensors.index.json").is_file()
    import_hf(tmp_path / "hf", tmp_path / "ck")
    assert_same_logits(tmp_path / "ck", hf, torch.tensor([[3, 1, 4, 1, 5, 9, 2, 6]]))


def test_qwen2_imports_with_its_query_key_value_biases(tmp_path):
    qwen = {**TINY, "tie_word_embeddings": True}
    hf = llama_folder(tmp_path / "hf", kind="qwen2", **qwen)
    assert "model.layers.0.self_attn.q_proj.bias" in hf.state_dict()
    result = import_hf(tmp_path / "hf", tmp_path / "ck")
    assert result.kind == "Qwen2ForCausalLM" and load_config(tmp_path / "ck").bias
    weights = load_weights(tmp_path / "ck")
    assert not weights["blocks.0.mlp.fc.bias"].any()  # the biases Qwen2 lacks are zeros
    assert_same_logits(tmp_path / "ck", hf, torch.tensor([[3, 1, 4, 1, 5, 9, 2, 6]]))


def test_a_mistral_without_a_window_imports(tmp_path):
    import transformers

    torch.manual_seed(0)
    hf = transformers.MistralForCausalLM(transformers.MistralConfig(
        **{**TINY, "sliding_window": None, "head_dim": 16})).eval()
    hf.save_pretrained(tmp_path / "hf")
    assert import_hf(tmp_path / "hf", tmp_path / "ck").kind == "MistralForCausalLM"
    assert_same_logits(tmp_path / "ck", hf, torch.tensor([[3, 1, 4, 1, 5, 9, 2, 6]]))


def llama_checkpoint(folder, seed=0, **keys):
    """A chalklm GPT with the Llama pieces and random weights, saved as a checkpoint."""
    llama = dict(vocab_size=300, block_size=32, n_layer=2, n_head=4, n_embd=32, norm="rmsnorm",
                 positional="rope", mlp="swiglu", n_kv_head=2, bias=False)
    config = GPTConfig(**{**llama, **keys})
    torch.manual_seed(seed)
    model = GPT(config).eval()
    with torch.no_grad():
        for param in model.parameters():
            param.add_(0.05 * torch.randn_like(param))
    save_checkpoint(folder, model.state_dict(), config)
    return model, config


@pytest.mark.parametrize("keys", [{}, {"tie_embeddings": False, "bias": True, "ffn_dim": 40}])
def test_export_loads_in_transformers_and_imports_back(tmp_path, keys):
    from transformers import AutoModelForCausalLM

    model, config = llama_checkpoint(tmp_path / "ck", **keys)
    result = export_hf(tmp_path / "ck", tmp_path / "hf")
    assert result.kind == "LlamaForCausalLM"
    hf = AutoModelForCausalLM.from_pretrained(tmp_path / "hf").eval()
    assert type(hf).__name__ == "LlamaForCausalLM"
    ids = torch.tensor([[5, 6, 7, 200, 1, 0, 299]])
    with torch.no_grad():
        torch.testing.assert_close(hf(ids).logits, model(ids)[0], atol=1e-4, rtol=0)
    import_hf(tmp_path / "hf", tmp_path / "back")
    assert load_config(tmp_path / "back") == config.replace(ffn_dim=config.hidden_size)
    back = load_weights(tmp_path / "back")
    for name, array in load_weights(tmp_path / "ck").items():
        np.testing.assert_array_equal(back[name], array, err_msg=name)


def test_a_gpt2_design_still_exports_as_gpt2(tmp_path):
    config = GPTConfig(vocab_size=40, block_size=16, n_layer=1, n_head=2, n_embd=16)
    save_checkpoint(tmp_path / "ck", GPT(config).state_dict(), config)
    assert export_hf(tmp_path / "ck", tmp_path / "hf").kind == "GPT2LMHeadModel"
    assert json.loads((tmp_path / "hf" / "config.json").read_text())["model_type"] == "gpt2"


def test_a_mixed_design_is_refused_by_name(tmp_path):
    model, config = llama_checkpoint(tmp_path / "ck", qk_norm=True)
    with pytest.raises(ConfigError, match="Llama cannot express qk_norm=True"):
        export_hf(tmp_path / "ck", tmp_path / "hf")
    assert not (tmp_path / "hf").exists()


@pytest.mark.parametrize("change, named", [
    ({"model_type": "gemma"}, "model_type 'gemma'"),
    ({"architectures": ["LlamaForSequenceClassification"]}, "LlamaForSequenceClassification"),
    ({"model_type": "mistral", "sliding_window": 4096}, "sliding_window=4096"),
    ({"rope_scaling": {"rope_type": "llama3", "factor": 32.0}}, "rope_scaling"),
    ({"rope_parameters": {"rope_type": "yarn", "rope_theta": 1e4}}, "rope_parameters"),
    ({"hidden_act": "gelu"}, "hidden_act='gelu'"),
    ({"head_dim": 32}, "head_dim=32"),
    ({"attention_bias": True, "mlp_bias": False}, "attention_bias=True.*mlp_bias=False"),
    ({"use_sliding_window": True}, "use_sliding_window"),
    ({"layer_types": ["full_attention", "sliding_attention"]}, "use_sliding_window"),
])
def test_unsupported_options_are_one_line_naming_them(tmp_path, change, named):
    base = {"model_type": "llama", "hidden_size": 64, "num_attention_heads": 4}
    with pytest.raises(ConfigError, match=named):
        config_from_llama({**base, **change})


def test_unsupported_architecture_on_the_command_line(tmp_path, capsys):
    llama_folder(tmp_path / "hf", **TINY)
    hf_config = json.loads((tmp_path / "hf" / "config.json").read_text())
    hf_config["rope_scaling"] = {"rope_type": "llama3", "factor": 8.0}
    (tmp_path / "hf" / "config.json").write_text(json.dumps(hf_config))
    capsys.readouterr()  # (transformers' progress bars while saving)
    with pytest.raises(SystemExit) as exit:
        main(["import-hf", str(tmp_path / "hf"), str(tmp_path / "ck")])
    err = capsys.readouterr().err
    assert exit.value.code == 2 and err.count("\n") == 1 and "rope_scaling" in err
    assert not (tmp_path / "ck").exists()


def test_missing_and_misshapen_weights_are_clear(tmp_path):
    from safetensors.torch import load_file, save_file

    llama_folder(tmp_path / "hf", **TINY)
    path = tmp_path / "hf" / "model.safetensors"
    state = load_file(path)
    del state["model.layers.1.mlp.up_proj.weight"]
    save_file(state, path, metadata={"format": "pt"})
    with pytest.raises(ShapeError, match="missing weight 'model.layers.1.mlp.up_proj.weight'"):
        import_hf(tmp_path / "hf", tmp_path / "ck")
    state["model.layers.1.mlp.up_proj.weight"] = torch.zeros(3, 3)
    save_file(state, path, metadata={"format": "pt"})
    with pytest.raises(ShapeError, match="up_proj.weight.*shape"):
        import_hf(tmp_path / "hf", tmp_path / "ck")


def test_a_pickled_bin_is_refused_unless_allowed(tmp_path, capsys):
    hf = llama_model(**TINY)
    (tmp_path / "hf").mkdir()
    hf.config.save_pretrained(tmp_path / "hf")
    torch.save(hf.state_dict(), tmp_path / "hf" / "pytorch_model.bin")
    with pytest.raises(SystemExit) as exit:
        main(["import-hf", str(tmp_path / "hf"), str(tmp_path / "ck")])
    assert exit.value.code == 2 and "--allow-pickle" in capsys.readouterr().err
    main_ok = ["import-hf", str(tmp_path / "hf"), str(tmp_path / "ck"), "--allow-pickle"]
    with pytest.raises(SystemExit) as exit:
        main(main_ok)
    assert exit.value.code == 0
    assert_same_logits(tmp_path / "ck", hf, torch.tensor([[1, 2, 3, 4]]))


# ------------------------------------------------------------------------ tokenizers
@pytest.fixture(scope="module", params=["llama3", "smollm2", "qwen2"])
def hf_tokenizer(request, tmp_path_factory):
    """(tokenizers.Tokenizer, folder with tokenizer.json + tokenizer_config.json)."""
    tok = train_tokenizer(request.param)
    folder = tmp_path_factory.mktemp(request.param)
    save_tokenizer(folder, tok, SMOLLM2_TEMPLATE)
    return tok, folder


@pytest.mark.parametrize("name", CASES)
def test_token_ids_equal_the_tokenizers_library(hf_tokenizer, name):
    tok, folder = hf_tokenizer
    ours = BPETokenizer.from_hf(folder / "tokenizer.json")
    text = CASES[name].replace("<|endoftext|>", "<|im_end|>")
    ids = tok.encode(text, add_special_tokens=False).ids
    assert ours.encode(text, allowed_special="all") == ids
    assert ours.decode(ids) == text


def test_numbers_and_accents_split_as_the_tokenizers_library(hf_tokenizer):
    tok, folder = hf_tokenizer
    ours = BPETokenizer.from_hf(folder / "tokenizer.json")
    for text in ["a 12 b  345 c\t\t678 x²y ①  ٣ 1,000,000.5", "year 2024  \n 99 bottles",
                 "  7", "x  \n\n 8", "cafe\u0301 e\u0301te\u0301 A\u030a \u212b"]:
        assert ours.encode(text) == tok.encode(text, add_special_tokens=False).ids, text


def test_import_brings_the_tokenizer_and_its_chat_template(tmp_path, hf_tokenizer):
    tok, folder = hf_tokenizer
    llama_folder(tmp_path / "hf", **TINY)
    for file in folder.iterdir():
        (tmp_path / "hf" / file.name).write_bytes(file.read_bytes())
    (tmp_path / "hf" / "generation_config.json").write_text(
        json.dumps({"eos_token_id": [tok.token_to_id("<|im_end|>"),
                                     tok.token_to_id("<|endoftext|>")]}))
    result = import_hf(tmp_path / "hf", tmp_path / "ck")
    assert any("chalklm chat" in note for note in result.notes)
    ours = load_tokenizer(tmp_path / "ck")
    assert ours.chat["template"] == SMOLLM2_TEMPLATE
    assert ours.chat["tokens"]["eos_token"] == "<|im_end|>"
    has_eot = tok.token_to_id("<|endoftext|>") is not None  # only the smollm2 style has it
    stops = ["<|im_end|>"] + (["<|endoftext|>"] if has_eot else [])
    assert ours.chat["stop"] == stops
    text = CASES["emoji"] + CASES["cjk"]
    assert ours.encode(text) == tok.encode(text, add_special_tokens=False).ids
    # and back out: transformers reads the exported tokenizer with its template
    from transformers import AutoTokenizer

    export_hf(tmp_path / "ck", tmp_path / "out")
    back = AutoTokenizer.from_pretrained(tmp_path / "out")
    assert back.chat_template == SMOLLM2_TEMPLATE and back.eos_token == "<|im_end|>"
    assert back.encode(text, add_special_tokens=False) == ours.encode(text)
    generation = json.loads((tmp_path / "out" / "generation_config.json").read_text())
    eos = [ours.special.ids[s] for s in stops]
    assert generation["eos_token_id"] == (eos if has_eot else eos[0])


def test_an_unreadable_tokenizer_pipeline_is_named(tmp_path, hf_tokenizer):
    _, folder = hf_tokenizer
    data = json.loads((folder / "tokenizer.json").read_text(encoding="utf-8"))
    data["normalizer"] = {"type": "Lowercase"}
    (tmp_path / "tokenizer.json").write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(TokenizerError, match="normalizer \\(Lowercase\\)"):
        BPETokenizer.from_hf(tmp_path / "tokenizer.json")


# ------------------------------------------------------------------------ using them
def imported_with_tokenizer(tmp_path, style="smollm2"):
    tok = train_tokenizer(style)
    llama_folder(tmp_path / "hf", seed=2, **{**TINY, "initializer_range": 0.2,
                                             "vocab_size": tok.get_vocab_size()})
    save_tokenizer(tmp_path / "hf", tok, SMOLLM2_TEMPLATE)
    import_hf(tmp_path / "hf", tmp_path / "ck")
    return tok


def test_sample_runs_on_an_imported_model(tmp_path, capsys):
    tok = imported_with_tokenizer(tmp_path)
    with pytest.raises(SystemExit) as exit:
        main(["sample", "--checkpoint", str(tmp_path / "ck"), "--prompt", "ROMEO:",
              "--max-new-tokens", "12", "--temperature", "0", "--json", "--device", "cpu"])
    assert exit.value.code == 0
    result = json.loads(capsys.readouterr().out)
    model, tokenizer = chalklm.load(tmp_path / "ck")
    prompt = tokenizer.encode("ROMEO:")
    assert result["prompt_ids"] == prompt == tok.encode("ROMEO:").ids
    expected = chalklm.generate(model, prompt, 12, temperature=0)[0]
    assert result["samples"][0]["ids"] == expected and len(expected) == 12
    assert result["samples"][0]["text"] == tokenizer.decode(expected)


def test_explain_opens_up_an_imported_model_in_both_engines(tmp_path):
    """`chalklm explain` on an import: the page's forward pass through RoPE, grouped-query
    attention and SwiGLU, its last position's chances the model's own, in either engine."""
    from starlette.testclient import TestClient

    from chalklm.explain.app import make_app
    from chalklm.explain.session import Explainer

    imported_with_tokenizer(tmp_path)
    client = TestClient(make_app(Explainer(tmp_path / "ck")))
    model, tokenizer = chalklm.load(tmp_path / "ck")
    ids = tokenizer.encode("ROMEO: to be")
    with torch.no_grad():
        want = model(torch.tensor([ids]))[0][0, -1].numpy()
    for engine in ("torch", "scratch"):
        answer = client.post("/api/next", json={"prompt": "ROMEO: to be", "engine": engine})
        assert answer.status_code == 200, answer.text
        np.testing.assert_allclose(answer.json()["logits"], want, atol=1e-4)
        assert answer.json()["greedy"] == int(np.argmax(want))
        forward = client.post("/api/forward", json={"prompt": "ROMEO: to be",
                                                    "engine": engine, "encoding": "lists"})
        assert forward.status_code == 200, forward.text


def test_an_imported_model_loads_in_bf16_with_bf16_weights(tmp_path):
    imported_with_tokenizer(tmp_path)
    model, _ = chalklm.load(tmp_path / "ck", dtype="bf16")
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    fp32 = logits_of(tmp_path / "ck", torch.tensor([[1, 2, 3]]))
    with torch.no_grad():
        bf16 = model(torch.tensor([[1, 2, 3]]))[0].float()
    torch.testing.assert_close(bf16, fp32, atol=0.1, rtol=0.05)


def test_the_glass_box_runs_an_imported_model(tmp_path):
    hf = llama_folder(tmp_path / "hf", **TINY)
    import_hf(tmp_path / "hf", tmp_path / "ck")
    glass, _ = chalklm.load(tmp_path / "ck", engine="scratch")
    from chalklm.scratch import no_grad

    ids = np.array([[4, 8, 15, 16, 23, 42]])
    with no_grad():
        ours = glass(ids)[0].data
    with torch.no_grad():
        expected = hf(torch.from_numpy(ids)).logits.numpy()
    np.testing.assert_allclose(ours, expected, atol=1e-4, rtol=0)


def test_export_of_a_non_gpt_checkpoint_is_refused(tmp_path):
    with pytest.raises(CheckpointError):
        export_hf(tmp_path / "nothing", tmp_path / "hf")
