"""GPT-2's names and layout, and how chalklm's GPT maps onto them. NumPy only: no torch here.

chalklm's GPT (docs/contract.md) and OpenAI's GPT-2 are the same machine under different
names. Three differences need more than a rename:

- GPT-2 stores query, key and value of a block as one matrix `attn.c_attn.weight` of
  shape (n_embd, 3 n_embd): the three (n_embd, n_embd) matrices side by side, in that
  order. Its "Conv1D" layer computes `x @ weight + bias`, the same (inputs, outputs)
  layout as our Linear, so nothing is transposed: we only cut or glue columns.
- GPT-2's LayerNorm calls its scale `weight`.
- GPT-2 always has biases, learned positions (`wpe`) and an output layer tied to the
  token embedding (`wte`). A chalklm model without one of these cannot be written as
  GPT-2; `check_expressible` says which one is missing.

Transformers' own GPT-2 has a few switches the original lacks (`n_inner`, extra
attention scalings, an untied `lm_head`): `config_from_gpt2` accepts those that still
compute the contract's math and refuses the others by name.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from chalklm.config import GPTConfig
from chalklm.errors import ConfigError, ShapeError

PREFIX = "transformer."  # GPT2LMHeadModel's names; GPT2Model (OpenAI's files) has none
LAYER_NORM_EPSILON = 1e-5  # the contract's LayerNorm epsilon, and GPT-2's
# Activation names transformers gives the tanh-form GELU of the contract.
TANH_GELUS = ("gelu_new", "gelu_pytorch_tanh", "gelu_fast")
# chalklm's activation -> transformers' name, and back (ACT2FN's "gelu" is the erf form).
TO_HF_ACTIVATION = {"gelu": "gelu_new", "gelu_exact": "gelu", "relu": "relu"}
FROM_HF_ACTIVATION = {**{name: "gelu" for name in TANH_GELUS}, "gelu": "gelu_exact",
                      "relu": "relu"}

# Parameters that are only renamed: (chalklm name, GPT-2 name without PREFIX).
# "{i}" is the block index.
TOP_RENAMES = [
    ("token_embedding.weight", "wte.weight"),
    ("position_embedding.weight", "wpe.weight"),
    ("ln_f.scale", "ln_f.weight"),
    ("ln_f.bias", "ln_f.bias"),
]
BLOCK_RENAMES = [
    ("ln_1.scale", "ln_1.weight"),
    ("ln_1.bias", "ln_1.bias"),
    ("attn.proj.weight", "attn.c_proj.weight"),
    ("attn.proj.bias", "attn.c_proj.bias"),
    ("ln_2.scale", "ln_2.weight"),
    ("ln_2.bias", "ln_2.bias"),
    ("mlp.fc.weight", "mlp.c_fc.weight"),
    ("mlp.fc.bias", "mlp.c_fc.bias"),
    ("mlp.proj.weight", "mlp.c_proj.weight"),
    ("mlp.proj.bias", "mlp.c_proj.bias"),
]
QKV = ("query", "key", "value")  # the order of the three column blocks in c_attn
# Buffers some GPT-2 files carry (the causal mask); they are not weights.
IGNORED_BLOCK_BUFFERS = ("attn.bias", "attn.masked_bias")


def renames(n_layer: int) -> list[tuple[str, str]]:
    """Every (chalklm name, GPT-2 name) pair that is a plain rename, GPT-2 names prefixed."""
    pairs = [(ours, PREFIX + theirs) for ours, theirs in TOP_RENAMES]
    for i in range(n_layer):
        pairs += [(f"blocks.{i}.{a}", f"{PREFIX}h.{i}.{b}") for a, b in BLOCK_RENAMES]
    return pairs


def check_expressible(config: GPTConfig) -> None:
    """Raise `ConfigError` naming the first feature of `config` that GPT-2 lacks."""
    if config.positional != "learned":
        raise ConfigError(
            f"GPT-2 cannot express positional={config.positional!r}: it always learns its "
            "positions (wpe); only models with positional='learned' can be exported"
        )
    if not config.tie_embeddings:
        raise ConfigError(
            "GPT-2 cannot express tie_embeddings=False: its output layer is always the token "
            "embedding (wte) transposed; only tied models can be exported"
        )
    if not config.bias:
        raise ConfigError(
            "GPT-2 cannot express bias=False: every GPT-2 Linear and LayerNorm has a bias; "
            "only models with bias=True can be exported"
        )
    gpt2 = GPTConfig(vocab_size=config.vocab_size, n_head=config.n_head,
                     n_embd=config.n_embd)  # the defaults are GPT-2's pieces
    for name in ("norm", "norm_eps", "mlp", "qk_norm"):
        if getattr(config, name) != getattr(gpt2, name):
            raise ConfigError(f"GPT-2 cannot express {name}={getattr(config, name)!r} (a "
                              f"Llama-family piece); GPT-2 has {name}={getattr(gpt2, name)!r}")
    if config.kv_heads != config.n_head or config.hidden_size != 4 * config.n_embd:
        raise ConfigError("GPT-2 cannot express n_kv_head or ffn_dim: it has a key and value "
                          "head per query head and an MLP 4 * n_embd wide")


def _take(state: Mapping[str, np.ndarray], name: str, shape: tuple[int, ...]) -> np.ndarray:
    """`state[name]`, checked to exist with `shape`: a clear ShapeError otherwise."""
    if name not in state:
        raise ShapeError(f"missing weight {name!r}")
    array = np.asarray(state[name])
    if array.shape != shape:
        raise ShapeError(f"weight {name!r} has shape {array.shape}, expected {shape}")
    return array


def _check_no_extra(state: Mapping[str, np.ndarray], used: set[str], what: str) -> None:
    extra = sorted(set(state) - used)
    if extra:
        shown = ", ".join(extra[:5]) + (" ..." if len(extra) > 5 else "")
        raise ShapeError(f"{len(extra)} unexpected {what} weight(s): {shown}")


def chalklm_shapes(config: GPTConfig) -> dict[str, tuple[int, ...]]:
    """The shape of every contract parameter of a GPT-2-expressible `config`."""
    d, v = config.n_embd, config.vocab_size
    shapes = {
        "token_embedding.weight": (v, d),
        "position_embedding.weight": (config.block_size, d),
        "ln_f.scale": (d,),
        "ln_f.bias": (d,),
    }
    block = {
        "ln_1.scale": (d,), "ln_1.bias": (d,), "ln_2.scale": (d,), "ln_2.bias": (d,),
        "attn.proj.weight": (d, d), "attn.proj.bias": (d,),
        "mlp.fc.weight": (d, 4 * d), "mlp.fc.bias": (4 * d,),
        "mlp.proj.weight": (4 * d, d), "mlp.proj.bias": (d,),
    }
    for part in QKV:
        block[f"attn.{part}.weight"] = (d, d)
        block[f"attn.{part}.bias"] = (d,)
    for i in range(config.n_layer):
        shapes.update({f"blocks.{i}.{name}": shape for name, shape in block.items()})
    return shapes


def to_gpt2_state(state: Mapping[str, np.ndarray], config: GPTConfig) -> dict[str, np.ndarray]:
    """chalklm weights (contract names) -> GPT2LMHeadModel weights (names and layout).

    The tied `lm_head.weight` is left out, as transformers itself saves it: on loading,
    it is set to `transformer.wte.weight`.
    """
    check_expressible(config)
    shapes = chalklm_shapes(config)
    _check_no_extra(state, set(shapes), "chalklm")
    out = {theirs: _take(state, ours, shapes[ours]) for ours, theirs in renames(config.n_layer)}
    for i in range(config.n_layer):
        for kind in ("weight", "bias"):
            parts = [
                _take(state, f"blocks.{i}.attn.{p}.{kind}", shapes[f"blocks.{i}.attn.{p}.{kind}"])
                for p in QKV
            ]
            # Side by side along the output axis: columns [q | k | v].
            out[f"{PREFIX}h.{i}.attn.c_attn.{kind}"] = np.concatenate(parts, axis=-1)
    return out


def _with_prefix(state: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Give every transformer-body name the `transformer.` prefix, whichever file it came from."""
    out = {}
    for name, array in state.items():
        if name.startswith(PREFIX) or name == "lm_head.weight":
            out[name] = array
        else:
            out[PREFIX + name] = array
    return out


def from_gpt2_state(state: Mapping[str, np.ndarray], config: GPTConfig) -> dict[str, np.ndarray]:
    """GPT-2 weights (either GPT2LMHeadModel's or GPT2Model's names) -> chalklm weights.

    `config` is the chalklm config of the model (see `config_from_gpt2`). With
    `tie_embeddings=False`, GPT-2's `lm_head.weight`, a torch Linear of shape
    (vocab, n_embd), becomes our `lm_head.weight` of shape (n_embd, vocab).
    """
    state = _with_prefix(state)
    shapes = chalklm_shapes(config)
    d, n_layer = config.n_embd, config.n_layer
    out = {ours: _take(state, theirs, shapes[ours]) for ours, theirs in renames(n_layer)}
    used = {theirs for _, theirs in renames(n_layer)}
    for i in range(n_layer):
        for kind, shape in (("weight", (d, 3 * d)), ("bias", (3 * d,))):
            name = f"{PREFIX}h.{i}.attn.c_attn.{kind}"
            fused = _take(state, name, shape)
            used.add(name)
            # Cut the columns [q | k | v] apart again.
            for part, block in zip(QKV, np.split(fused, 3, axis=-1)):
                out[f"blocks.{i}.attn.{part}.{kind}"] = block
        used.update(f"{PREFIX}h.{i}.{buffer}" for buffer in IGNORED_BLOCK_BUFFERS)
    if "lm_head.weight" in state:
        used.add("lm_head.weight")
        head = _take(state, "lm_head.weight", (config.vocab_size, d))
        if not config.tie_embeddings:
            out["lm_head.weight"] = head.T
        elif not np.array_equal(head, out["token_embedding.weight"]):
            raise ShapeError(
                "lm_head.weight differs from transformer.wte.weight although the config "
                "says tie_word_embeddings=true"
            )
    elif not config.tie_embeddings:
        raise ShapeError("missing weight 'lm_head.weight' (the config says the head is untied)")
    _check_no_extra(state, used, "GPT-2")
    return out


def config_to_gpt2(config: GPTConfig, bos_token_id=None, eos_token_id=None) -> dict:
    """The `config.json` that makes transformers build the same model as `config`."""
    check_expressible(config)
    return {
        "architectures": ["GPT2LMHeadModel"],
        "model_type": "gpt2",
        "vocab_size": config.vocab_size,
        "n_positions": config.block_size,
        "n_embd": config.n_embd,
        "n_layer": config.n_layer,
        "n_head": config.n_head,
        "n_inner": None,  # None means 4 * n_embd, the contract's MLP width
        "activation_function": TO_HF_ACTIVATION[config.activation],
        "layer_norm_epsilon": LAYER_NORM_EPSILON,
        # chalklm has one dropout rate; GPT-2 names three places it applies.
        "resid_pdrop": config.dropout,
        "embd_pdrop": config.dropout,
        "attn_pdrop": config.dropout,
        "scale_attn_weights": True,  # scores divided by sqrt(head_size)
        "tie_word_embeddings": True,
        "bos_token_id": bos_token_id,  # None unless the tokenizer has such a token
        "eos_token_id": eos_token_id,
    }


def _refuse(field: str, value, reason: str):
    raise ConfigError(f"chalklm cannot import a GPT-2 with {field}={value!r}: {reason}")


def _check_gpt2_switches(hf: Mapping) -> None:
    """Refuse transformers' GPT-2 options that change the math away from the contract."""
    d = hf.get("n_embd", 768)
    if hf.get("activation_function", "gelu_new") not in FROM_HF_ACTIVATION:
        _refuse("activation_function", hf["activation_function"],
                f"chalklm's MLP knows {', '.join(FROM_HF_ACTIVATION)}")
    if hf.get("n_inner") not in (None, 4 * d):
        _refuse("n_inner", hf["n_inner"], f"the contract's MLP is 4 * n_embd = {4 * d} wide")
    epsilon = hf.get("layer_norm_epsilon", LAYER_NORM_EPSILON)
    if not np.isclose(epsilon, LAYER_NORM_EPSILON, rtol=1e-6, atol=0):
        _refuse("layer_norm_epsilon", epsilon,
                f"the contract's LayerNorm uses {LAYER_NORM_EPSILON}")
    if not hf.get("scale_attn_weights", True):
        _refuse("scale_attn_weights", False, "the contract divides scores by sqrt(head_size)")
    if hf.get("scale_attn_by_inverse_layer_idx", False):
        _refuse("scale_attn_by_inverse_layer_idx", True,
                "the contract does not scale scores by layer depth")
    if hf.get("add_cross_attention", False):
        _refuse("add_cross_attention", True, "a GPT has no cross-attention")


def config_from_gpt2(hf: Mapping) -> GPTConfig:
    """A GPT-2 `config.json` (as a dict) -> the chalklm `GPTConfig` of the same model.

    Missing fields take transformers' GPT2Config defaults. The three dropout rates become
    chalklm's one rate (the largest): dropout only acts in training, never on outputs.
    """
    if hf.get("model_type", "gpt2") != "gpt2":
        raise ConfigError(f"config.json is for model_type {hf['model_type']!r}, not 'gpt2'")
    _check_gpt2_switches(hf)
    dropout = max(float(hf.get(k, 0.1)) for k in ("resid_pdrop", "embd_pdrop", "attn_pdrop"))
    return GPTConfig(
        vocab_size=hf.get("vocab_size", 50257),
        block_size=hf.get("n_positions", hf.get("n_ctx", 1024)),
        n_layer=hf.get("n_layer", 12),
        n_head=hf.get("n_head", 12),
        n_embd=hf.get("n_embd", 768),
        dropout=dropout,
        bias=True,
        positional="learned",
        tie_embeddings=bool(hf.get("tie_word_embeddings", True)),
        activation=FROM_HF_ACTIVATION[hf.get("activation_function", "gelu_new")],
    )
