"""How fast does chalklm's Transformer train and translate? Two comparisons, in one run:

1. Training tokens/s: chalklm.models.Transformer against torch.nn.Transformer of the
   same size (3 + 3 layers, 256 wide, 8 heads, FFN 1024, GELU, tied 5000-token
   embeddings, label smoothing 0.1, Adam), on the same Multi30k token-count batches
   (the trainer's length bucketing), in the same dtype and threads, timed turn about
   (forward + backward + Adam step). Each side runs as its trainer would: chalklm
   scores only the non-padding target positions (`return_logits=False`), the peer the
   whole (batch, time) grid, as the usual nn.Transformer recipe does. Tokens = target
   tokens that are not padding (what the loss averages over). Goal: chalklm at least
   1.5x the peer.
2. Decoding sentences/s: batched beam search (beam 4) against greedy decoding, with the
   model of --checkpoint (a trained one stops at </s>; without it a random model runs
   every sentence to the length limit, source length + 50).

    python benchmarks/translation.py [--steps 10] [--threads 2] [--dtype bf16|fp32]
                                     [--checkpoint runs/multi30k_de_en/averaged]

Writes benchmarks/results/translation.json. Ratios are the point, not absolute times:
run it on an idle machine.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from contextlib import nullcontext
from pathlib import Path


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=10, help="timed training steps per model")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--batch-tokens", type=int, default=4096)
    parser.add_argument("--vocab-size", type=int, default=5000)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--dtype", choices=["fp32", "bf16"], default="bf16",
                        help="bf16: autocast, as the trainer runs on a CPU")
    parser.add_argument("--norm-first", action="store_true", help="pre-norm (default: post)")
    parser.add_argument("--checkpoint", help="a trained translation checkpoint for decoding")
    parser.add_argument("--sentences", type=int, default=64, help="sentences decoded")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"
                                             / "translation.json"))
    return parser.parse_args()


def peer_model(config):
    """torch.nn.Transformer dressed as chalklm's: same embeddings (tied, x sqrt(C),
    sinusoidal positions), same loss. nn.Transformer adds a final LayerNorm to each stack
    even in post-norm: 2 x 2 x 256 more numbers, nothing to time."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    from chalklm.models.positional import sinusoidal_table

    class Peer(nn.Module):
        def __init__(self):
            super().__init__()
            C = config.n_embd
            self.embedding = nn.Embedding(config.src_vocab_size, C)
            nn.init.normal_(self.embedding.weight, std=C**-0.5)
            self.register_buffer("pe", sinusoidal_table(config.max_len, C), persistent=False)
            self.transformer = nn.Transformer(
                C, config.n_head, config.n_layer_enc, config.n_layer_dec, config.ffn_dim,
                config.dropout, activation=config.activation, batch_first=True,
                norm_first=config.norm_first)
            self.dropout = nn.Dropout(config.dropout)

        def embed(self, ids):
            C = self.embedding.weight.shape[1]
            return self.dropout(self.embedding(ids) * math.sqrt(C) + self.pe[: ids.shape[1]])

        def forward(self, src, tgt_in, tgt_out):
            pad = config.pad_id
            T = tgt_in.shape[1]
            causal = nn.Transformer.generate_square_subsequent_mask(T, dtype=torch.bool)
            x = self.transformer(self.embed(src), self.embed(tgt_in), tgt_mask=causal,
                                 src_key_padding_mask=src == pad,
                                 memory_key_padding_mask=src == pad, tgt_is_causal=True)
            logits = x @ self.embedding.weight.T
            return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(),
                                   tgt_out.reshape(-1), ignore_index=pad,
                                   label_smoothing=config.label_smoothing)

    return Peer()


def training_step(model, loss_of, optimizer, autocast):
    def step(batch):
        with autocast():
            loss = loss_of(model, batch)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return step


def time_training(args, config, batches):
    import torch

    from chalklm.models.transformer import Transformer

    def ours_loss(model, batch):
        (src, tgt_in), tgt_out = batch
        return model(src, tgt_in, tgt_out, return_logits=False)[1]

    def peer_loss(model, batch):
        (src, tgt_in), tgt_out = batch
        return model(src, tgt_in, tgt_out)

    def autocast():
        if args.dtype == "bf16":
            return torch.autocast("cpu", dtype=torch.bfloat16)
        return nullcontext()

    from chalklm.training.engines import fused_attention_is_faster

    torch.manual_seed(0)
    fused = fused_attention_is_faster("cpu", args.dtype)  # as the trainer chooses
    models = {"chalklm": (Transformer(config, fused), ours_loss), "nn.Transformer":
              (peer_model(config), peer_loss)}
    steps, params = {}, {}
    for name, (model, loss_of) in models.items():
        model.train()
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-4, betas=(0.9, 0.98),
                                     eps=1e-9)
        steps[name] = training_step(model, loss_of, optimizer, autocast)
        params[name] = sum(p.numel() for p in model.parameters())
    tensors = [((torch.from_numpy(s), torch.from_numpy(ti)), torch.from_numpy(to))
               for (s, ti), to in batches]
    for i in range(args.warmup):
        for step in steps.values():
            step(tensors[i % len(tensors)])
    times = {name: [] for name in steps}
    for i in range(args.steps):  # turn about: background load falls on both alike
        batch = tensors[i % len(tensors)]
        for name, step in steps.items():
            start = time.perf_counter()
            step(batch)
            times[name].append(time.perf_counter() - start)
    tokens = [int((to != config.pad_id).sum()) for _, to in tensors]
    result = {}
    for name, record in times.items():
        per_step = sorted(record)[len(record) // 2]
        mean_tokens = sum(tokens[i % len(tokens)] for i in range(args.steps)) / args.steps
        result[name] = {"median_step_s": round(per_step, 4),
                        "tokens_per_s": round(mean_tokens / per_step),
                        "parameters": params[name]}
    result["speedup"] = round(result["chalklm"]["tokens_per_s"]
                              / result["nn.Transformer"]["tokens_per_s"], 3)
    return result


def time_decoding(args, translator, sentences):
    from chalklm.data.parallel import pad_rows
    from chalklm.translation.decoding import beam_search, greedy

    src = [translator.source_ids(s) for s in sentences]
    order = sorted(range(len(src)), key=lambda i: len(src[i]))
    batch = pad_rows([src[i] for i in order], translator.ids.pad)
    result = {}
    for name, decode in (("greedy", lambda: greedy(translator.stepper, batch, translator.ids,
                                                    translator.config.max_len)),
                         ("beam 4", lambda: beam_search(translator.stepper, batch,
                                                        translator.ids,
                                                        translator.config.max_len, 4, 0.6))):
        start = time.perf_counter()
        out = decode()
        seconds = time.perf_counter() - start
        result[name] = {"seconds": round(seconds, 3),
                        "sentences_per_s": round(len(sentences) / seconds, 2),
                        "mean_output_tokens": round(sum(map(len, out)) / len(out), 1)}
    result["beam_vs_greedy"] = round(result["beam 4"]["sentences_per_s"]
                                     / result["greedy"]["sentences_per_s"], 3)
    return result


def main() -> None:
    args = parse_args()
    import torch

    from chalklm.config import TransformerConfig
    from chalklm.data.parallel import (
        SpecialIds,
        encode_pairs,
        load_multi30k,
        train_tokenizer,
    )
    from chalklm.translation.training import BucketedPairs
    from chalklm.translation.translator import Translator

    torch.set_num_threads(args.threads)
    pairs = load_multi30k("train")
    if args.checkpoint:
        from chalklm.checkpoint import load_tokenizer

        tokenizer = load_tokenizer(args.checkpoint)
    else:
        tokenizer = train_tokenizer(pairs, args.vocab_size, progress=False)
    ids = SpecialIds.of(tokenizer)
    V = tokenizer.vocab_size
    config = TransformerConfig(src_vocab_size=V, tgt_vocab_size=V, n_layer_enc=3,
                               n_layer_dec=3, n_head=8, n_embd=256, ffn_dim=1024,
                               dropout=0.1, max_len=128, norm_first=args.norm_first,
                               pad_id=ids.pad, label_smoothing=0.1)
    data = BucketedPairs(encode_pairs(tokenizer, pairs, config.max_len), ids.pad)
    batches = [data.batch(args.batch_tokens, 0, i) for i in range(args.steps + args.warmup)]
    print(f"training: {args.steps} steps of ~{args.batch_tokens} tokens, {args.dtype}, "
          f"{args.threads} threads, {'pre' if args.norm_first else 'post'}-norm, load average "
          f"{os.getloadavg()[0]:.2f} (the ratio is the point; absolute times need an idle "
          "machine)")
    training = time_training(args, config, batches)
    for name in ("chalklm", "nn.Transformer"):
        r = training[name]
        print(f"  {name:15s} {r['tokens_per_s']:>8,} tokens/s  ({r['median_step_s']:.3f} "
              f"s/step, {r['parameters']:,} parameters)")
    print(f"  chalklm / nn.Transformer: {training['speedup']:.2f}x")

    if args.checkpoint:
        translator = Translator.from_checkpoint(args.checkpoint)
        kind = f"checkpoint {args.checkpoint}"
    else:
        from chalklm.models.transformer import Transformer

        translator = Translator(config, Transformer(config).state_dict(), tokenizer)
        kind = "a random model (runs to the length limit)"
    sentences = [s for s, _ in load_multi30k("val")[: args.sentences]]
    print(f"decoding {len(sentences)} validation sentences in one batch, {kind}")
    decoding = time_decoding(args, translator, sentences)
    for name in ("greedy", "beam 4"):
        r = decoding[name]
        print(f"  {name:7s} {r['sentences_per_s']:>7.2f} sentences/s  "
              f"({r['mean_output_tokens']} tokens a sentence)")
    print(f"  beam 4 / greedy: {decoding['beam_vs_greedy']:.2f}x")

    report = {"settings": vars(args), "load_average": os.getloadavg(),
              "training": training, "decoding": decoding}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
