"""Hugging Face interop: chalklm GPT <-> transformers' GPT-2, checked against transformers.

The proofs are transformers itself: a folder we export loads in `GPT2LMHeadModel` and gives
our logits; a folder `save_pretrained` writes imports into a chalklm checkpoint whose greedy
continuations equal transformers' `generate`.
"""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
import transformers

from chalklm.checkpoint import load_config, load_weights, save_checkpoint
from chalklm.cli import main
from chalklm.config import GPTConfig
from chalklm.errors import CheckpointError, ConfigError, ShapeError, TokenizerError
from chalklm.interop import export_hf, import_hf
from chalklm.interop.gpt2 import (
    chalklm_shapes,
    config_from_gpt2,
    config_to_gpt2,
    from_gpt2_state,
    to_gpt2_state,
)
from chalklm.interop.tokenizer import char_to_hf
from chalklm.models import GPT
from chalklm.scratch import no_grad
from chalklm.scratch.models import GPT as GlassGPT
from chalklm.tokenizers import BPETokenizer, CharTokenizer, load_tokenizer

TINY = GPTConfig(vocab_size=21, block_size=16, n_layer=2, n_head=2, n_embd=32)
TEXT = "the cat sat on a mat\nbeside the hat\n"


def random_state(config: GPTConfig, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    shapes = chalklm_shapes(config)
    return {name: rng.standard_normal(shape).astype(np.float32) for name, shape in shapes.items()}


def chalk_checkpoint(folder: Path, config: GPTConfig = TINY, seed: int = 0):
    """A fast-engine GPT with random weights (biases and scales too), saved as a checkpoint."""
    torch.manual_seed(seed)
    model = GPT(config).eval()
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith(("bias", "scale")):
                param.add_(0.1 * torch.randn_like(param))  # not all zeros/ones: catch swaps
    tokenizer = CharTokenizer(TEXT)
    assert tokenizer.vocab_size <= config.vocab_size
    save_checkpoint(folder, model.state_dict(), config, tokenizer=tokenizer)
    return model, tokenizer


def hf_folder(folder: Path, seed: int = 0, save: dict | None = None,
              **shape) -> transformers.GPT2LMHeadModel:
    """What transformers itself writes for a randomly initialised GPT-2 (`save`: options
    of save_pretrained)."""
    torch.manual_seed(seed)
    config = transformers.GPT2Config(bos_token_id=None, eos_token_id=None, **shape)
    model = transformers.GPT2LMHeadModel(config).eval()
    model.save_pretrained(folder, **(save or {}))
    return model


def fast_model(checkpoint: Path) -> GPT:
    model = GPT(load_config(checkpoint)).eval()
    model.load_weights(load_weights(checkpoint))
    return model


def glass_model(checkpoint: Path) -> GlassGPT:
    model = GlassGPT(load_config(checkpoint)).eval()
    model.load_state_dict(load_weights(checkpoint))
    return model


def greedy(next_logits, ids: list[int], steps: int) -> list[int]:
    """Append the highest-scoring next token `steps` times (the article's feed-back loop)."""
    ids = list(ids)
    for _ in range(steps):
        ids.append(int(np.argmax(next_logits(np.array([ids])))))
    return ids


def torch_logits(model):
    def next_logits(ids: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return model(torch.as_tensor(ids))[0][0, -1].numpy()

    return next_logits


def glass_logits(model):
    def next_logits(ids: np.ndarray) -> np.ndarray:
        with no_grad():
            return model(ids)[0].data[0, -1]

    return next_logits


def hf_greedy(model, ids: list[int], steps: int) -> list[int]:
    out = model.generate(torch.tensor([ids]), max_new_tokens=steps, min_new_tokens=steps,
                         do_sample=False, pad_token_id=0)
    return out[0].tolist()


# --- the name and layout mapping (NumPy only) -------------------------------------------


def test_mapping_round_trips_and_glues_qkv_side_by_side():
    state = random_state(TINY)
    gpt2 = to_gpt2_state(state, TINY)
    d = TINY.n_embd
    c_attn = gpt2["transformer.h.1.attn.c_attn.weight"]
    assert c_attn.shape == (d, 3 * d)
    np.testing.assert_array_equal(c_attn[:, :d], state["blocks.1.attn.query.weight"])
    np.testing.assert_array_equal(c_attn[:, d:2 * d], state["blocks.1.attn.key.weight"])
    np.testing.assert_array_equal(gpt2["transformer.h.1.attn.c_attn.bias"][2 * d:],
                                  state["blocks.1.attn.value.bias"])
    np.testing.assert_array_equal(gpt2["transformer.h.0.ln_2.weight"], state["blocks.0.ln_2.scale"])
    assert "lm_head.weight" not in gpt2  # tied: transformers sets it to wte on loading
    back = from_gpt2_state(gpt2, TINY)
    assert set(back) == set(state)
    for name in state:
        np.testing.assert_array_equal(back[name], state[name])


def test_mapping_reads_openai_names_and_ignores_mask_buffers():
    """OpenAI's own files (GPT2Model) have no `transformer.` prefix and carry the mask."""
    gpt2 = to_gpt2_state(random_state(TINY), TINY)
    bare = {name.removeprefix("transformer."): a for name, a in gpt2.items()}
    bare["h.0.attn.bias"] = np.tril(np.ones((1, 1, 16, 16), np.float32))
    back = from_gpt2_state(bare, TINY)
    assert set(back) == set(chalklm_shapes(TINY))


def test_mapping_names_a_missing_wrong_or_extra_weight():
    gpt2 = to_gpt2_state(random_state(TINY), TINY)
    missing = {k: v for k, v in gpt2.items() if k != "transformer.h.1.mlp.c_fc.bias"}
    with pytest.raises(ShapeError, match="h.1.mlp.c_fc.bias"):
        from_gpt2_state(missing, TINY)
    wrong = dict(gpt2, **{"transformer.wpe.weight": np.zeros((8, 32), np.float32)})
    with pytest.raises(ShapeError, match=r"wpe.weight.*\(8, 32\).*\(16, 32\)"):
        from_gpt2_state(wrong, TINY)
    extra = dict(gpt2, **{"transformer.h.2.ln_1.weight": np.zeros(32, np.float32)})
    with pytest.raises(ShapeError, match="unexpected.*h.2.ln_1.weight"):
        from_gpt2_state(extra, TINY)


@pytest.mark.parametrize("change, reason", [
    ({"positional": "sinusoidal"}, "positional='sinusoidal'"),
    ({"tie_embeddings": False}, "tie_embeddings=False"),
    ({"bias": False}, "bias=False"),
])
def test_models_gpt2_cannot_express_are_refused_by_name(tmp_path, change, reason):
    config = TINY.replace(**change)
    chalk_checkpoint(tmp_path / "ck", config)
    with pytest.raises(ConfigError, match=f"GPT-2 cannot express {reason}"):
        export_hf(tmp_path / "ck", tmp_path / "hf")
    assert not (tmp_path / "hf").exists()


def test_gpt2_small_config_maps_to_its_chalklm_twin_and_back():
    hf = transformers.GPT2Config().to_dict()  # GPT-2 small: 12 layers, 12 heads, 768 wide
    config = config_from_gpt2(hf)
    assert config == GPTConfig(vocab_size=50257, block_size=1024, n_layer=12, n_head=12,
                               n_embd=768, dropout=0.1)
    again = transformers.GPT2Config(**config_to_gpt2(config))
    for field in ("vocab_size", "n_positions", "n_embd", "n_layer", "n_head", "n_inner",
                  "activation_function", "layer_norm_epsilon", "resid_pdrop"):
        assert getattr(again, field) == hf[field], field


@pytest.mark.parametrize("field, value", [
    ("activation_function", "silu"),
    ("n_inner", 100),
    ("layer_norm_epsilon", 1e-6),
    ("scale_attn_by_inverse_layer_idx", True),
    ("model_type", "llama"),
])
def test_gpt2_configs_outside_the_contract_are_refused(field, value):
    hf = transformers.GPT2Config(n_embd=32, n_layer=2, n_head=2).to_dict()
    config_from_gpt2(hf)  # the unchanged one is fine
    with pytest.raises(ConfigError, match=field if field != "model_type" else "llama"):
        config_from_gpt2(dict(hf, **{field: value}))


# --- export: transformers runs our model ------------------------------------------------


@pytest.mark.parametrize("activation", ["gelu", "gelu_exact", "relu"])
def test_every_activation_maps_to_transformers_and_back(activation):
    config = TINY.replace(activation=activation)
    hf = transformers.GPT2Config(**config_to_gpt2(config))
    assert config_from_gpt2(hf.to_dict()) == config


@pytest.mark.parametrize("activation", ["gelu", "gelu_exact"])
def test_export_loads_in_transformers_with_our_logits(tmp_path, activation):
    model, tokenizer = chalk_checkpoint(tmp_path / "ck", TINY.replace(activation=activation))
    result = export_hf(tmp_path / "ck", tmp_path / "hf")
    assert result.notes == []
    (tmp_path / "plain").mkdir()  # the folder gets the permissions any new folder gets
    assert (tmp_path / "hf").stat().st_mode == (tmp_path / "plain").stat().st_mode
    hf = transformers.GPT2LMHeadModel.from_pretrained(tmp_path / "hf").eval()
    ids = torch.tensor([tokenizer.encode("the hat sat\non a cat")[:16]])
    with torch.no_grad():
        ours, theirs = model(ids)[0], hf(ids).logits
    assert theirs.shape == (1, 16, TINY.vocab_size)
    assert torch.allclose(ours, theirs, atol=1e-4, rtol=0), (ours - theirs).abs().max()


def test_exported_char_tokenizer_loads_in_transformers(tmp_path):
    _, tokenizer = chalk_checkpoint(tmp_path / "ck")
    export_hf(tmp_path / "ck", tmp_path / "hf")
    hf_tokenizer = transformers.AutoTokenizer.from_pretrained(tmp_path / "hf")
    text = "a hat\nthe mat"
    ids = tokenizer.encode(text)
    assert hf_tokenizer(text)["input_ids"] == ids
    assert hf_tokenizer.decode(ids) == text


def test_export_then_import_gives_back_the_same_checkpoint(tmp_path):
    model, tokenizer = chalk_checkpoint(tmp_path / "ck")
    export_hf(tmp_path / "ck", tmp_path / "hf")
    import_hf(tmp_path / "hf", tmp_path / "back")
    assert load_config(tmp_path / "back") == TINY
    assert load_tokenizer(tmp_path / "back" / "tokenizer.json") == tokenizer
    weights = load_weights(tmp_path / "back")
    assert set(weights) == set(model.state_dict())
    for name, value in model.state_dict().items():
        np.testing.assert_array_equal(weights[name], value.numpy())


def test_exported_bpe_tokenizer_loads_in_transformers_and_comes_back(tmp_path):
    bpe = BPETokenizer.train(TEXT * 3, 270, special_tokens=["<|endoftext|>"], progress=False)
    config = TINY.replace(vocab_size=bpe.vocab_size)
    save_checkpoint(tmp_path / "ck", GPT(config).state_dict(), config, tokenizer=bpe)
    export_hf(tmp_path / "ck", tmp_path / "hf")
    hf_config = json.loads((tmp_path / "hf" / "config.json").read_text())
    assert hf_config["eos_token_id"] == hf_config["bos_token_id"] == 269  # <|endoftext|>
    text = "the mat sat<|endoftext|> on \u00e9t\u00e9 \U0001f600"
    ids = bpe.encode(text, allowed_special="all")
    assert 269 in ids and len(ids) < len(text.encode())  # merges and the special token at work
    hf_tokenizer = transformers.AutoTokenizer.from_pretrained(tmp_path / "hf")
    assert hf_tokenizer(text)["input_ids"] == ids
    assert hf_tokenizer.decode(ids) == text
    import_hf(tmp_path / "hf", tmp_path / "back")
    assert load_tokenizer(tmp_path / "back" / "tokenizer.json") == bpe


# --- import: we run transformers' model -------------------------------------------------


def test_import_of_a_transformers_folder_continues_exactly_like_generate(tmp_path):
    hf = hf_folder(tmp_path / "hf", vocab_size=50, n_positions=32, n_embd=32, n_layer=2,
                   n_head=4, initializer_range=0.2)
    result = import_hf(tmp_path / "hf", tmp_path / "ck")
    assert result.config == GPTConfig(vocab_size=50, block_size=32, n_layer=2, n_head=4,
                                      n_embd=32, dropout=0.1)
    assert any("no tokenizer.json" in note for note in result.notes)
    prompt = [3, 1, 4, 1, 5, 9, 2, 6]
    expected = hf_greedy(hf, prompt, 20)
    assert len(set(expected[len(prompt):])) > 1  # a continuation worth comparing
    assert greedy(torch_logits(fast_model(tmp_path / "ck")), prompt, 20) == expected
    assert greedy(glass_logits(glass_model(tmp_path / "ck")), prompt, 20) == expected
    ids = torch.tensor([prompt])
    with torch.no_grad():
        assert torch.allclose(fast_model(tmp_path / "ck")(ids)[0], hf(ids).logits, atol=1e-4)


def test_import_brings_a_tokenizer_written_by_hf_tokenizers(tmp_path):
    from tokenizers import ByteLevelBPETokenizer

    hf_tokenizer = ByteLevelBPETokenizer()
    hf_tokenizer.train_from_iterator([TEXT * 3], vocab_size=280, special_tokens=[],
                                     show_progress=False)
    hf_folder(tmp_path / "hf", vocab_size=hf_tokenizer.get_vocab_size(), n_positions=8,
              n_embd=16, n_layer=1, n_head=2)
    hf_tokenizer.save(str(tmp_path / "hf" / "tokenizer.json"))
    result = import_hf(tmp_path / "hf", tmp_path / "ck")
    assert result.notes == []
    ours = load_tokenizer(tmp_path / "ck" / "tokenizer.json")
    text = "the cat beside a hat, \u00e9t\u00e9"
    assert ours.encode(text) == hf_tokenizer.encode(text).ids
    assert ours.decode(ours.encode(text)) == text


def test_a_tokenizer_chalklm_cannot_read_is_one_clear_error(tmp_path):
    hf_folder(tmp_path / "hf", vocab_size=10, n_positions=8, n_embd=16, n_layer=1, n_head=2)
    unigram = {"model": {"type": "Unigram", "vocab": [["a", 0.0]]}}
    (tmp_path / "hf" / "tokenizer.json").write_text(json.dumps(unigram))
    with pytest.raises(TokenizerError, match="tokenizer.json: chalklm cannot read.*Unigram"):
        import_hf(tmp_path / "hf", tmp_path / "ck")
    assert not (tmp_path / "ck").exists()


def test_a_tokenizer_bigger_than_the_model_is_refused(tmp_path):
    hf_folder(tmp_path / "hf", vocab_size=10, n_positions=8, n_embd=16, n_layer=1, n_head=2)
    (tmp_path / "hf" / "tokenizer.json").write_text(json.dumps(char_to_hf(CharTokenizer(TEXT))))
    with pytest.raises(CheckpointError, match="tokenizer has 14 tokens but the model only 10"):
        import_hf(tmp_path / "hf", tmp_path / "ck")


def test_import_reads_a_weights_only_pytorch_model_bin(tmp_path):
    hf = hf_folder(tmp_path / "hf", vocab_size=30, n_positions=8, n_embd=16, n_layer=1, n_head=2)
    os.remove(tmp_path / "hf" / "model.safetensors")
    torch.save(hf.state_dict(), tmp_path / "hf" / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match="pickled PyTorch file.*--allow-pickle"):
        import_hf(tmp_path / "hf", tmp_path / "ck")
    import_hf(tmp_path / "hf", tmp_path / "ck", allow_pickle=True)
    wte = hf.state_dict()["transformer.wte.weight"].numpy()
    np.testing.assert_array_equal(load_weights(tmp_path / "ck")["token_embedding.weight"], wte)


def test_import_reads_a_model_saved_in_shards(tmp_path):
    hf = hf_folder(tmp_path / "hf", save={"max_shard_size": "10KB"}, vocab_size=30,
                   n_positions=8, n_embd=16, n_layer=2, n_head=2)
    shards = sorted((tmp_path / "hf").glob("model-*.safetensors"))
    assert len(shards) > 1
    import_hf(tmp_path / "hf", tmp_path / "ck")
    shards[-1].rename(tmp_path / "aside.safetensors")
    with pytest.raises(CheckpointError, match=f"{shards[-1].name}: missing"):
        import_hf(tmp_path / "hf", tmp_path / "ck2")
    ids = torch.tensor([[1, 2, 3, 4, 5]])
    with torch.no_grad():
        assert torch.allclose(fast_model(tmp_path / "ck")(ids)[0], hf(ids).logits, atol=1e-5)


class _RunsCode:
    """Unpickling this calls os.mkdir: the kind of file weights_only must refuse."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.mkdir, (str(self.marker),)


def test_import_refuses_a_pickle_that_would_run_code(tmp_path):
    hf_folder(tmp_path / "hf", vocab_size=30, n_positions=8, n_embd=16, n_layer=1, n_head=2)
    os.remove(tmp_path / "hf" / "model.safetensors")
    marker = tmp_path / "code-ran"
    torch.save({"transformer.wte.weight": _RunsCode(marker)}, tmp_path / "hf" / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match="not a weights-only PyTorch file"):
        import_hf(tmp_path / "hf", tmp_path / "ck", allow_pickle=True)
    assert not marker.exists()
    assert pickle.loads(pickle.dumps(1)) == 1  # (pickle itself is untouched)


def test_import_of_a_bad_folder_is_one_clear_error(tmp_path):
    with pytest.raises(CheckpointError, match="no such folder"):
        import_hf(tmp_path / "nowhere", tmp_path / "ck")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="config.json: missing"):
        import_hf(tmp_path / "empty", tmp_path / "ck")
    hf_folder(tmp_path / "hf", vocab_size=30, n_positions=8, n_embd=16, n_layer=1, n_head=2)
    os.remove(tmp_path / "hf" / "model.safetensors")
    with pytest.raises(CheckpointError, match="no model.safetensors or pytorch_model.bin"):
        import_hf(tmp_path / "hf", tmp_path / "ck")
    (tmp_path / "hf" / "model.safetensors").write_bytes(b"not really")
    with pytest.raises(CheckpointError, match="corrupt or not a safetensors file"):
        import_hf(tmp_path / "hf", tmp_path / "ck")
    config = json.loads((tmp_path / "hf" / "config.json").read_text())
    assert config["n_embd"] == 16
    assert not (tmp_path / "ck").exists()


def test_weights_that_do_not_fit_the_config_name_the_weight(tmp_path):
    hf_folder(tmp_path / "hf", vocab_size=30, n_positions=8, n_embd=16, n_layer=1, n_head=2)
    config_file = tmp_path / "hf" / "config.json"
    config_file.write_text(json.dumps(dict(json.loads(config_file.read_text()), n_positions=9)))
    with pytest.raises(ShapeError, match=r"wpe.weight.*\(8, 16\).*\(9, 16\)"):
        import_hf(tmp_path / "hf", tmp_path / "ck")


# --- nothing is lost: overwriting needs --force -----------------------------------------


def test_a_non_empty_output_is_kept_unless_forced(tmp_path):
    chalk_checkpoint(tmp_path / "ck")
    out = tmp_path / "hf"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(CheckpointError, match="not empty; pass --force"):
        export_hf(tmp_path / "ck", out)
    assert (out / "notes.txt").read_text() == "mine"
    export_hf(tmp_path / "ck", out, force=True)
    assert sorted(p.name for p in out.iterdir()) == [
        "config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"]
    for inside in (out, tmp_path):  # replacing the output would delete the input
        with pytest.raises(CheckpointError, match="the output folder holds the input"):
            import_hf(out, inside, force=True)
    assert (out / "model.safetensors").is_file()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no leftovers


# --- the command line ---------------------------------------------------------------------


def test_cli_exports_and_imports(tmp_path, capsys):
    chalk_checkpoint(tmp_path / "ck")
    with pytest.raises(SystemExit) as exit_:
        main(["export-hf", str(tmp_path / "ck"), str(tmp_path / "hf")])
    assert exit_.value.code == 0
    assert "GPT2LMHeadModel.from_pretrained" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_:
        main(["import-hf", str(tmp_path / "hf"), str(tmp_path / "back")])
    assert exit_.value.code == 0
    assert load_config(tmp_path / "back") == TINY


def test_cli_errors_are_one_line_and_exit_2(tmp_path, capsys):
    chalk_checkpoint(tmp_path / "ck", TINY.replace(positional="sinusoidal"))
    with pytest.raises(SystemExit) as exit_:
        main(["export-hf", str(tmp_path / "ck"), str(tmp_path / "hf")])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "positional='sinusoidal'" in err


@pytest.mark.slow
def test_import_of_gpt2_small_shapes_continues_exactly_like_generate(tmp_path):
    """GPT-2 small's shapes (12 layers, 12 heads, 768 wide, context 1024, 50257 tokens)."""
    hf = hf_folder(tmp_path / "hf", vocab_size=50257, n_positions=1024, n_embd=768, n_layer=12,
                   n_head=12)
    import_hf(tmp_path / "hf", tmp_path / "ck")
    prompt = [464, 2068, 7586, 21831, 18045, 625, 262, 16931, 3290]
    expected = hf_greedy(hf, prompt, 6)
    del hf
    assert greedy(torch_logits(fast_model(tmp_path / "ck")), prompt, 6) == expected
    assert greedy(glass_logits(glass_model(tmp_path / "ck")), prompt, 6) == expected
