"""Llama's names and layout, and how chalklm's GPT with the Llama pieces maps onto them.
NumPy only: no torch here.

Hugging Face's `LlamaForCausalLM` (SmolLM2, Llama 3, TinyLlama...) is chalklm's GPT with
`norm="rmsnorm"`, `positional="rope"`, `mlp="swiglu"`, `n_kv_head` and no biases. Two
differences need more than a rename:

- transformers' `nn.Linear` stores its weight as (outputs, inputs) and computes
  `x @ weight.T`; our Linear stores (inputs, outputs) and computes `x @ weight`. Every
  Linear weight is transposed on the way in and out.
- RMSNorm calls its scale `weight`.

Rotary positions need nothing: chalklm pairs a head's numbers as (x[i], x[i + hs/2]),
the layout of Llama's `rotate_half`, so query and key weights keep their rows' order.

Mistral (`MistralForCausalLM`) is the same model, with the same names; chalklm reads it
when its sliding window is off. Qwen2 (`Qwen2ForCausalLM`) is the same model with biases
on query, key and value only.
chalklm's `bias` switch puts a bias on every Linear, so a Qwen2 imports with `bias=True`
and zeros for the biases it lacks: the same arithmetic, exactly.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from chalklm.config import GPTConfig
from chalklm.errors import ConfigError, ShapeError

ARCHITECTURES = {"llama": "LlamaForCausalLM", "qwen2": "Qwen2ForCausalLM",
                 "mistral": "MistralForCausalLM"}

# (chalklm name, Llama name), "{i}" the block index; True where the array is a Linear
# weight, stored transposed. Norm scales and biases are plain renames.
TOP = [("token_embedding.weight", "model.embed_tokens.weight", False),
       ("ln_f.scale", "model.norm.weight", False)]
BLOCK = [
    ("ln_1.scale", "input_layernorm.weight", False),
    ("attn.query.weight", "self_attn.q_proj.weight", True),
    ("attn.key.weight", "self_attn.k_proj.weight", True),
    ("attn.value.weight", "self_attn.v_proj.weight", True),
    ("attn.proj.weight", "self_attn.o_proj.weight", True),
    ("ln_2.scale", "post_attention_layernorm.weight", False),
    ("mlp.gate.weight", "mlp.gate_proj.weight", True),
    ("mlp.fc.weight", "mlp.up_proj.weight", True),
    ("mlp.proj.weight", "mlp.down_proj.weight", True),
]
BIASES = [("attn.query.bias", "self_attn.q_proj.bias"), ("attn.key.bias", "self_attn.k_proj.bias"),
          ("attn.value.bias", "self_attn.v_proj.bias"), ("attn.proj.bias", "self_attn.o_proj.bias"),
          ("mlp.gate.bias", "mlp.gate_proj.bias"), ("mlp.fc.bias", "mlp.up_proj.bias"),
          ("mlp.proj.bias", "mlp.down_proj.bias")]
QKV_BIASES = BIASES[:3]  # the only biases a Qwen2 has
ROPE_BUFFERS = ("self_attn.rotary_emb.inv_freq",)  # older files carry the rotary table


def names(config: GPTConfig) -> list[tuple[str, str, bool]]:
    """Every (chalklm name, Llama name, transposed) triple of `config`'s weights."""
    triples = list(TOP)
    if not config.tie_embeddings:
        triples.append(("lm_head.weight", "lm_head.weight", True))
    block = BLOCK + ([(a, b, False) for a, b in BIASES] if config.bias else [])
    for i in range(config.n_layer):
        triples += [(f"blocks.{i}.{a}", f"model.layers.{i}.{b}", t) for a, b, t in block]
    return triples


def check_expressible(config: GPTConfig) -> None:
    """Raise `ConfigError` naming the first feature of `config` that Llama lacks."""
    llama = {"norm": "rmsnorm", "positional": "rope", "mlp": "swiglu", "qk_norm": False}
    for key, value in llama.items():
        if getattr(config, key) != value:
            raise ConfigError(f"Llama cannot express {key}={getattr(config, key)!r}; it has "
                              f"{key}={value!r} (export GPT-2 designs as GPT-2)")


def _refuse(field: str, value, reason: str):
    raise ConfigError(f"chalklm cannot import a model with {field}={value!r}: {reason}")


def _check_llama_switches(hf: Mapping, kind: str) -> None:
    """Refuse the options that change the math away from chalklm's GPT, by name."""
    if hf.get("hidden_act", "silu") != "silu":
        _refuse("hidden_act", hf["hidden_act"], "chalklm's SwiGLU gates with silu")
    for field in ("rope_scaling", "rope_parameters"):  # transformers 4's name, and 5's
        rope = hf.get(field) or {}
        if rope.get("rope_type", rope.get("type", "default")) != "default":
            _refuse(field, rope, "chalklm's RoPE turns by t * theta^(-2i/hs) only (no "
                    "long-context scaling)")
    if kind == "mistral" and hf.get("sliding_window") is not None:
        _refuse("sliding_window", hf["sliding_window"], "chalklm's attention sees the whole "
                "context (a Mistral without a window has sliding_window=null)")
    if hf.get("use_sliding_window", False) or any(
            kind != "full_attention" for kind in hf.get("layer_types") or []):
        _refuse("use_sliding_window", True, "chalklm's attention sees the whole context")
    width, heads = hf.get("hidden_size", 4096), hf.get("num_attention_heads", 32)
    if hf.get("head_dim") not in (None, width // heads):
        _refuse("head_dim", hf["head_dim"], f"chalklm's heads are hidden_size / "
                f"num_attention_heads = {width // heads} wide")
    if hf.get("pretraining_tp", 1) != 1:
        _refuse("pretraining_tp", hf["pretraining_tp"], "only 1 computes the plain products")
    if kind == "llama" and hf.get("attention_bias", False) != hf.get("mlp_bias", False):
        _refuse("attention_bias", hf.get("attention_bias"),
                f"with mlp_bias={hf.get('mlp_bias', False)!r}: chalklm's bias switch puts "
                "biases on every Linear or on none")


def config_from_llama(hf: Mapping) -> GPTConfig:
    """A Llama (or Qwen2) `config.json` (as a dict) -> the chalklm GPTConfig of that model.
    Missing fields take transformers' LlamaConfig defaults."""
    kind = hf.get("model_type")
    if kind not in ARCHITECTURES:
        raise ConfigError(f"config.json is for model_type {kind!r}; chalklm imports "
                          f"{', '.join(['gpt2', *ARCHITECTURES])}")
    architecture = (hf.get("architectures") or [ARCHITECTURES[kind]])[0]
    if architecture != ARCHITECTURES[kind]:
        _refuse("architectures", [architecture], f"chalklm imports the language model "
                f"{ARCHITECTURES[kind]}, which predicts the next token")
    _check_llama_switches(hf, kind)
    heads = hf.get("num_attention_heads", 32)
    return GPTConfig(
        vocab_size=hf.get("vocab_size", 32000),
        block_size=hf.get("max_position_embeddings", 2048),
        n_layer=hf.get("num_hidden_layers", 32),
        n_head=heads,
        n_embd=hf.get("hidden_size", 4096),
        dropout=float(hf.get("attention_dropout", 0.0)),
        bias=kind == "qwen2" or bool(hf.get("attention_bias", False)),
        positional="rope",
        tie_embeddings=bool(hf.get("tie_word_embeddings", False)),
        norm="rmsnorm",
        norm_eps=float(hf.get("rms_norm_eps", 1e-6)),
        mlp="swiglu",
        ffn_dim=hf.get("intermediate_size", 11008),
        n_kv_head=hf.get("num_key_value_heads") or heads,
        rope_theta=float(hf.get("rope_theta") or (hf.get("rope_parameters") or {}).get(
            "rope_theta", 10000.0)),
    )


def config_to_llama(config: GPTConfig, bos_token_id=None, eos_token_id=None) -> dict:
    """The `config.json` that makes transformers build the same model as `config`."""
    check_expressible(config)
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": config.vocab_size,
        "max_position_embeddings": config.block_size,
        "hidden_size": config.n_embd,
        "intermediate_size": config.hidden_size,
        "num_hidden_layers": config.n_layer,
        "num_attention_heads": config.n_head,
        "num_key_value_heads": config.kv_heads,
        "head_dim": config.head_size,
        "hidden_act": "silu",
        "rms_norm_eps": config.norm_eps,
        "rope_theta": config.rope_theta,
        "rope_scaling": None,
        "attention_bias": config.bias,
        "mlp_bias": config.bias,
        "attention_dropout": config.dropout,
        "tie_word_embeddings": config.tie_embeddings,
        "bos_token_id": bos_token_id,
        "eos_token_id": eos_token_id,
        "torch_dtype": "float32",
    }


def shapes(config: GPTConfig) -> dict[str, tuple[int, ...]]:
    """chalklm name -> shape of every weight of a Llama-expressible `config`."""
    d, kv, f = config.n_embd, config.kv_heads * config.head_size, config.hidden_size
    block = {"ln_1.scale": (d,), "ln_2.scale": (d,), "attn.query.weight": (d, d),
             "attn.key.weight": (d, kv), "attn.value.weight": (d, kv),
             "attn.proj.weight": (d, d), "mlp.gate.weight": (d, f), "mlp.fc.weight": (d, f),
             "mlp.proj.weight": (f, d), "attn.query.bias": (d,), "attn.key.bias": (kv,),
             "attn.value.bias": (kv,), "attn.proj.bias": (d,), "mlp.gate.bias": (f,),
             "mlp.fc.bias": (f,), "mlp.proj.bias": (d,)}
    out = {"token_embedding.weight": (config.vocab_size, d), "ln_f.scale": (d,),
           "lm_head.weight": (d, config.vocab_size)}
    for i in range(config.n_layer):
        out.update({f"blocks.{i}.{name}": shape for name, shape in block.items()})
    return out


def _checked(array, name: str, shape: tuple[int, ...]):
    if tuple(array.shape) != shape:
        raise ShapeError(f"weight {name!r} has shape {tuple(array.shape)}, expected {shape}")
    return array


def from_llama_state(get, available: set[str], config: GPTConfig,
                     qkv_biases_only: bool = False) -> dict:
    """Llama weights -> chalklm weights, one tensor at a time: `get(name)` reads one
    tensor (so a large model is never in memory twice); `available` is every name the
    files hold. With `qkv_biases_only` (a Qwen2), the biases it lacks are zeros.
    Returns name -> array (or tensor)."""
    expected = shapes(config)
    used = set()
    out = {}
    for ours, theirs, transposed in names(config):
        shape = expected[ours]
        if theirs not in available:
            if qkv_biases_only and ours.endswith(".bias"):
                out[ours] = np.zeros(shape, dtype=np.float32)  # a Qwen2's absent bias
                continue
            raise ShapeError(f"missing weight {theirs!r}")
        used.add(theirs)
        array = get(theirs)
        out[ours] = _checked(array.T if transposed else array, theirs, shape)
    if config.tie_embeddings and "lm_head.weight" in available:
        used.add("lm_head.weight")  # transformers may save the tied head; it is the embedding
    extra = sorted(n for n in available - used if not n.endswith(ROPE_BUFFERS))
    if extra:
        shown = ", ".join(extra[:5]) + (" ..." if len(extra) > 5 else "")
        raise ShapeError(f"{len(extra)} unexpected Llama weight(s): {shown}")
    return out


def to_llama_state(state: Mapping[str, np.ndarray], config: GPTConfig) -> dict[str, np.ndarray]:
    """chalklm weights -> LlamaForCausalLM weights (names and layout). The tied head is
    left out, as transformers saves it."""
    check_expressible(config)
    expected = shapes(config)
    triples = names(config)
    missing = sorted({ours for ours, _, _ in triples} - set(state))
    extra = sorted(set(state) - {ours for ours, _, _ in triples})
    if missing or extra:
        raise ShapeError(f"weights do not match the config: missing {missing[:5]}, "
                         f"unexpected {extra[:5]}")
    return {theirs: np.ascontiguousarray(
                _checked(np.asarray(state[ours]), ours, expected[ours]).T if t
                else state[ours])
            for ours, theirs, t in triples}
