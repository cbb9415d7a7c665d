"""Write a Hugging Face Llama folder (as `chalklm export-hf` writes it) as a GGUF file, for
llama.cpp to run in benchmarks/generation.py. Benchmark tooling, not part of chalklm.

llama.cpp names every tensor its own way and turns RoPE's pairs as neighbours (x[2i],
x[2i+1]) where Hugging Face's Llama pairs x[i] with x[i + hs/2]; so the query and key
rows are reordered within each head (as llama.cpp's own converter does), which makes
both compute the same attention. The file carries a byte-level BPE vocabulary: the
folder's tokenizer.json when there is one, else a stand-in: the 256 byte tokens and merged
pairs of letters, padded with unused tokens to the model's vocabulary size (the benchmark
feeds token ids, so what the tokens spell does not matter).

    python benchmarks/gguf_from_hf.py FOLDER OUT.gguf [--dtype float32|bfloat16]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def neighbour_pairs(weight: np.ndarray, heads: int) -> np.ndarray:
    """Rows of a query or key matrix (heads * hs, C) reordered within each head so that
    pair i's two rows, i and i + hs/2, sit side by side (llama.cpp's rope order)."""
    rows, columns = weight.shape
    half = rows // heads // 2
    return weight.reshape(heads, 2, half, columns).swapaxes(1, 2).reshape(rows, columns)


def byte_tokens() -> list[str]:
    """GPT-2's printable stand-in for each of the 256 bytes (the byte-level alphabet)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1),
                 *range(ord("®"), ord("ÿ") + 1)]
    extra = iter(range(256, 512))
    return [chr(b) if b in printable else chr(next(extra)) for b in range(256)]


def vocabulary(folder: Path, size: int) -> tuple[list[str], list[int], list[str]]:
    """(tokens, their llama.cpp types, merges)."""
    import gguf

    path = folder / "tokenizer.json"
    if path.is_file():
        model = json.loads(path.read_text(encoding="utf-8"))["model"]
        tokens = [None] * size
        for text, i in model["vocab"].items():
            if i < size:
                tokens[i] = text
        merges = [m if isinstance(m, str) else " ".join(m) for m in model["merges"]]
    else:  # the byte tokens, then pairs of letters merged (llama.cpp wants some merges)
        tokens = byte_tokens()
        letters = [chr(c) for c in range(ord("a"), ord("z") + 1)]
        pairs = [(x, y) for x in letters for y in letters][:max(1, size - len(tokens))]
        merges = [f"{x} {y}" for x, y in pairs]
        tokens += [x + y for x, y in pairs]
    tokens = [t if t is not None else f"<unused{i}>" for i, t in enumerate(tokens)]
    tokens += [f"<unused{i}>" for i in range(len(tokens), size)]
    types = [gguf.TokenType.NORMAL if not t.startswith("<unused") else gguf.TokenType.UNUSED
             for t in tokens]
    return tokens, [int(t) for t in types], merges


def write_gguf(folder: Path, out: Path, dtype: str = "float32") -> Path:
    import gguf
    from safetensors.numpy import load_file

    config = json.loads((folder / "config.json").read_text())
    weights = load_file(folder / "model.safetensors")
    heads, kv_heads = config["num_attention_heads"], config["num_key_value_heads"]
    writer = gguf.GGUFWriter(str(out), "llama")
    writer.add_context_length(config["max_position_embeddings"])
    writer.add_embedding_length(config["hidden_size"])
    writer.add_block_count(config["num_hidden_layers"])
    writer.add_feed_forward_length(config["intermediate_size"])
    writer.add_head_count(heads)
    writer.add_head_count_kv(kv_heads)
    writer.add_rope_freq_base(float(config.get("rope_theta", 10000.0)))
    writer.add_layer_norm_rms_eps(float(config["rms_norm_eps"]))
    writer.add_rope_dimension_count(config["hidden_size"] // heads)
    bf16 = dtype == "bfloat16"
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_BF16 if bf16 else gguf.LlamaFileType.ALL_F32)
    tokens, types, merges = vocabulary(folder, config["vocab_size"])
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)
    writer.add_bos_token_id(config.get("bos_token_id") or 0)
    writer.add_eos_token_id(config.get("eos_token_id") or 0)
    names = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight":
             "output_norm.weight", "lm_head.weight": "output.weight"}
    per_layer = {"input_layernorm": "attn_norm", "self_attn.q_proj": "attn_q",
                 "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
                 "self_attn.o_proj": "attn_output", "post_attention_layernorm": "ffn_norm",
                 "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
                 "mlp.down_proj": "ffn_down"}
    for i in range(config["num_hidden_layers"]):
        for theirs, ours in per_layer.items():
            names[f"model.layers.{i}.{theirs}.weight"] = f"blk.{i}.{ours}.weight"
    for name, array in weights.items():
        array = np.ascontiguousarray(array, dtype=np.float32)
        if name.endswith("q_proj.weight"):
            array = neighbour_pairs(array, heads)
        elif name.endswith("k_proj.weight"):
            array = neighbour_pairs(array, kv_heads)
        if bf16 and array.ndim == 2:  # the matrices; norms stay float32, as llama.cpp keeps them
            array = gguf.quants.quantize(array, gguf.GGMLQuantizationType.BF16)
            writer.add_tensor(names[name], array, raw_dtype=gguf.GGMLQuantizationType.BF16)
        else:
            writer.add_tensor(names[name], array)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
    args = parser.parse_args()
    print(f"wrote {write_gguf(args.folder, args.out, args.dtype)}")


if __name__ == "__main__":
    main()
