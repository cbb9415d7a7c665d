"""Training the Transformer to translate: the GPT's trainer with another task.

The loop, checkpoints, exact resume, progress bar and metrics are chalklm.training's
Trainer; `TranslationTask` is what translation changes:
  - data: sentence pairs (chalklm.data.parallel), batched by token count;
    a micro-batch is ((src, tgt_in), tgt_out): inputs, then targets, as for the GPT;
  - the model: chalklm.models.Transformer (or the glass box's, --engine scratch), fed
    the true previous target tokens ("teacher forcing");
  - the paper's recipe: Adam (0.9, 0.98, 1e-9), the inverse-square-root schedule
    lr = peak * min(step / warmup, sqrt(warmup / step)), label smoothing 0.1, dropout
    0.1, and the average of the last checkpoints' weights (`averaged/`);
  - the validation loss is the plain cross-entropy per target token (no smoothing),
    and the run ends by translating some validation sentences and scoring them (BLEU).
"""

from __future__ import annotations

import math
import shutil

import numpy as np

from chalklm.checkpoint import load_weights, save_checkpoint
from chalklm.config import TransformerConfig
from chalklm.data.parallel import (
    PairBatches,
    SpecialIds,
    encode_pairs,
    load_multi30k,
    read_parallel,
    train_tokenizer,
)
from chalklm.errors import CheckpointError, ConfigError
from chalklm.files import write_atomic
from chalklm.scratch.nn import Module
from chalklm.training.engines import TorchEngine
from chalklm.training.scratch_engine import ScratchEngine
from chalklm.training.trainer import Trainer, check_same_model, learning_rate
from chalklm.translation.config import TranslationTrainConfig

SNAPSHOTS = "snapshots"  # weights of the last checkpoints, for averaging
AVERAGED = "averaged"


def inverse_sqrt_lr(step: int, peak: float, warmup: int) -> float:
    """The paper's schedule: linear warmup to `peak`, then decay as 1 / sqrt(step).

    (Vaswani et al. write d^-0.5 * min(step^-0.5, step * warmup^-1.5): the same curve,
    peaking at d^-0.5 * warmup^-0.5.)"""
    step = step + 1
    if warmup <= 0:
        return peak / math.sqrt(step)
    return peak * min(step / warmup, math.sqrt(warmup / step))


def load_pairs(cfg: TranslationTrainConfig):
    """(train pairs, validation pairs) of the run's data."""
    if cfg.data == "multi30k":
        return (load_multi30k("train", cfg.src_lang, cfg.tgt_lang),
                load_multi30k("val", cfg.src_lang, cfg.tgt_lang))
    train = read_parallel(cfg.train_src, cfg.train_tgt)
    if cfg.val_src:
        return train, read_parallel(cfg.val_src, cfg.val_tgt)
    return hold_out(train)


def hold_out(pairs: list, share: float = 0.05, most: int = 1000) -> tuple[list, list]:
    """(train, validation): the last 5% of the pairs (at most 1000, at least 1) become
    the validation set, for a user who has one pair of files and no validation split."""
    if len(pairs) < 2:
        raise ConfigError(f"{len(pairs)} sentence pair(s): too few to hold out a validation "
                          "set; give --val-src and --val-tgt")
    n = min(most, max(1, int(len(pairs) * share)))
    return pairs[:-n], pairs[-n:]


def average_weights(folders) -> dict[str, np.ndarray]:
    """The element-wise mean of the weights in several checkpoints (the paper averages the
    last 5): a cheap ensemble that usually translates a little better than the last one."""
    folders = list(folders)
    if not folders:
        raise CheckpointError("no checkpoints to average")
    total = None
    for folder in folders:
        weights = load_weights(folder)
        if total is None:
            total = {k: v.astype(np.float64) for k, v in weights.items()}
        elif set(weights) != set(total):
            raise CheckpointError(f"{folder}: its weights are named differently; only "
                                  "checkpoints of one model can be averaged")
        else:
            for k, v in weights.items():
                total[k] += v
    return {k: (v / len(folders)).astype(np.float32) for k, v in total.items()}


class BucketedPairs(PairBatches):
    """PairBatches whose epochs sort the pairs by their longer side first, then by the
    target's length (ties at random).

    A batch costs rows x (longest source + longest target) and PairBatches packs rows up
    to rows x max(longest source, longest target) tokens. Sorting by the source alone
    leaves the targets of a batch of different lengths; sorting by the longer side keeps
    both close: on Multi30k (BPE 5000, 4096 tokens) 127 batches an epoch instead of 137,
    95% of source and target cells real tokens instead of 99% and 87%."""

    def epoch(self, max_tokens: int, seed: int, epoch: int) -> list[np.ndarray]:
        key = (max_tokens, seed, epoch)
        if self._layout[0] != key:
            rng = np.random.default_rng([seed, epoch])
            longer = np.maximum(self.src_len, self.tgt_len)
            order = np.lexsort((rng.random(len(self.src_len)), self.tgt_len, longer))
            batches = self.cut(order, max_tokens)
            self._layout = (key, [batches[i] for i in rng.permutation(len(batches))])
            self._sizes[key] = len(batches)
        return self._layout[1]


# ---- the two engines -------------------------------------------------------------


def torch_teacher_forcing(model):
    """model(inputs, targets) -> model(src, tgt_in, tgt_out), as the trainer calls a model.

    "Teacher forcing": the decoder reads the true previous target tokens (tgt_in), so
    every position of every sentence trains at once."""
    from torch import nn

    class TeacherForcing(nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, inputs, targets):
            src, tgt_in = inputs
            # the loss only: the output layer then scores just the non-padding positions
            return self.inner(src, tgt_in, targets, return_logits=False)

    return TeacherForcing(model)


class GlassTeacherForcing(Module):
    """The glass box's teacher forcing; it adds no names (its weights are the Transformer's)."""

    def __init__(self, inner):
        self.inner = inner
        self.config = inner.config

    def _walk_parameters(self, prefix):
        return self.inner._walk_parameters(prefix)

    def forward(self, inputs, targets):
        src, tgt_in = inputs
        return self.inner(src, tgt_in, targets)


class TorchTranslationEngine(TorchEngine):
    """The fast engine's Transformer with the paper's Adam; the rest is TorchEngine's."""

    def __init__(self, model_config: TransformerConfig, cfg, device, dtype, dist):
        from chalklm.models.transformer import Transformer

        self._setup(lambda fused: Transformer(model_config, fused_attention=fused), cfg, device,
                    dtype, dist, wrap=torch_teacher_forcing, adam_eps=cfg.adam_eps)

    def _tensor(self, array):
        if isinstance(array, tuple):  # the inputs (src, tgt_in)
            return tuple(super(TorchTranslationEngine, self)._tensor(a) for a in array)
        return super()._tensor(array)

    def loss_sum(self, x, y) -> float:
        """Summed cross-entropy (no label smoothing) over the non-padding targets."""
        import torch

        self.model.eval()
        with torch.no_grad(), self.autocast():
            _, loss = self.model(*self._tensor(x), self._tensor(y), label_smoothing=0.0,
                                 return_logits=False)
        return float(loss) * int((y != self.model.config.pad_id).sum())

    def translator(self, tokenizer):
        from chalklm.translation.translator import Translator

        return Translator(self.model.config, self.weights(), tokenizer, "torch", self.device)


class ScratchTranslationEngine(ScratchEngine):
    """The glass box's Transformer, trained by the glass box (slow, every number visible)."""

    def __init__(self, model_config: TransformerConfig, cfg, dist):
        from chalklm.scratch.models import Transformer

        self._setup(lambda: Transformer(model_config), cfg, dist, wrap=GlassTeacherForcing,
                    adam_eps=cfg.adam_eps)

    def loss_sum(self, x, y) -> float:
        from chalklm.scratch import no_grad

        self.network.eval()
        with no_grad():
            _, loss = self.network(*x, y, label_smoothing=0.0)
        return loss.item() * int((y != self.network.config.pad_id).sum())

    def flops_per_token(self) -> float:
        return 6 * self.network.num_params()

    def translator(self, tokenizer):
        from chalklm.translation.translator import Translator

        return Translator(self.network.config, self.weights(), tokenizer, "scratch")


# ---- the trainer -----------------------------------------------------------------


class TranslationTask:
    """What the trainer learns when it translates (see LanguageModelTask, the GPT's):
    sentence pairs, the Transformer, targets that are not padding, the paper's schedule,
    BLEU on validation sentences, and the average of the last checkpoints."""

    config_type = TransformerConfig
    start_weights = None  # a translation run starts from fresh weights or a resumed run

    def prepare(self, trainer, model_keys: dict, checkpoint) -> None:
        """The trainer's tokenizer, model_config, train_data and val_data."""
        cfg, main = trainer.cfg, trainer.setup_progress
        train_pairs, self.val_pairs = load_pairs(cfg)
        if checkpoint is not None:
            tokenizer = checkpoint.tokenizer
        elif cfg.tokenizer == "bpe":
            tokenizer = train_tokenizer(train_pairs, cfg.vocab_size, progress=main)
        else:
            from chalklm.tokenizers import load_tokenizer

            tokenizer = load_tokenizer(cfg.tokenizer)
        self.ids = SpecialIds.of(tokenizer)
        if checkpoint is not None:
            config = checkpoint.config
            check_same_model(model_keys, config)
        else:
            V = tokenizer.vocab_size
            config = TransformerConfig(src_vocab_size=V, tgt_vocab_size=V, pad_id=self.ids.pad,
                                       **model_keys)
        train = encode_pairs(tokenizer, train_pairs, config.max_len, progress=main)
        val = encode_pairs(tokenizer, self.val_pairs, config.max_len)
        self.filtered = train.dropped
        trainer.tokenizer, trainer.model_config = tokenizer, config
        trainer.train_data = BucketedPairs(train, self.ids.pad)
        trainer.val_data = PairBatches(val, self.ids.pad)

    def engine(self, trainer):
        if trainer.cfg.engine == "scratch":
            return ScratchTranslationEngine(trainer.model_config, trainer.cfg, trainer.dist)
        return TorchTranslationEngine(trainer.model_config, trainer.cfg, trainer.device,
                                      trainer.dtype, trainer.dist)

    def targets(self, y) -> int:
        """Target tokens that are not padding: the loss is per real target token."""
        return int((y != self.ids.pad).sum())

    def learning_rate(self, trainer) -> float:
        cfg = trainer.cfg
        if cfg.schedule == "cosine":
            return learning_rate(trainer.step, trainer.progress(), cfg)
        return inverse_sqrt_lr(trainer.step, cfg.learning_rate, cfg.warmup_steps)

    def sample(self, trainer) -> str:
        """Translate the first validation sentences (greedy) and score them: sample.txt."""
        from chalklm.translation.evaluation import score

        pairs = self.val_pairs[: trainer.cfg.bleu_sentences]
        if not pairs:
            return ""
        translator = trainer.engine.translator(trainer.tokenizer)
        hyps = translator.translate([s for s, _ in pairs], beam_size=0)
        scores = score(hyps, [t for _, t in pairs])
        lines = [f"greedy BLEU on the first {len(pairs)} validation sentences: "
                 f"{scores.bleu:.2f} (chrF {scores.chrf:.2f})"]
        for (src, ref), hyp in list(zip(pairs, hyps))[:5]:
            lines += [f"  source:      {src}", f"  translation: {hyp}", f"  reference:   {ref}"]
        text = "\n".join(lines)
        write_atomic(trainer.out / "sample.txt", text + "\n")
        return text

    def saved(self, trainer, name: str) -> None:
        """Each `last` checkpoint's weights also go to snapshots/ (the newest few kept)."""
        keep = trainer.cfg.average_last
        if name != "last" or keep <= 0:
            return
        snapshots = trainer.out / SNAPSHOTS
        save_checkpoint(snapshots / f"step-{trainer.step:08d}", trainer.engine.weights(),
                        trainer.model_config)
        for old in sorted(snapshots.glob("step-*"))[:-keep]:
            shutil.rmtree(old, ignore_errors=True)

    def finished(self, trainer, summary: dict) -> None:
        """The snapshots' average becomes averaged/."""
        if trainer.cfg.average_last > 0:
            folders = sorted((trainer.out / SNAPSHOTS).glob("step-*"))
            save_checkpoint(trainer.out / AVERAGED, average_weights(folders),
                            trainer.model_config, trainer.tokenizer)
            summary["averaged"] = len(folders)


def file_flags(args) -> dict:
    """--src/--tgt (and --val-src/--val-tgt) as config keys: data = files and the paths."""
    paths = dict(train_src=args.src, train_tgt=args.tgt, val_src=args.val_src,
                 val_tgt=args.val_tgt)
    if not any(paths.values()):
        return {"data": args.data}
    if args.data is not None:
        raise ConfigError("give --data (multi30k) or --src/--tgt (files), not both")
    return dict(data="files", **{k: v for k, v in paths.items() if v})


def run_cli(args) -> int:
    """`chalklm train --config <a translation config>`: the same flags as for the GPT."""
    from chalklm.training.config import parse_duration
    from chalklm.translation.config import load_translation_config

    budget = None if args.time_budget is None else parse_duration(args.time_budget)
    model_keys, cfg = load_translation_config(
        args.config, args.overrides, tokenizer=args.tokenizer, out=args.out,
        max_steps=args.max_steps, time_budget=budget, device=args.device, dtype=args.dtype,
        compile=args.compile, engine=args.engine, seed=args.seed, **file_flags(args),
    )
    trainer = Trainer(model_keys, cfg, resume=args.resume, force=args.force,
                      task=TranslationTask(), progress=not args.no_progress)
    summary = trainer.run(progress=not args.no_progress)
    if trainer.dist.is_main:
        print(f"\n--- translations ---\n{summary.pop('sample', '')}\n---")
        print(f"step {summary['step']}: validation loss {summary['val_loss']:.4f} "
              f"(best {summary['best_val_loss']:.4f}) after {summary['train_seconds']:.0f}s "
              f"on {summary['device']} {summary['dtype']}, stopped by {summary['stopped_by']}")
        extra = f", averaged/ (last {summary['averaged']})" if summary.get("averaged") else ""
        print(f"run folder: {cfg.out} (best/, last/{extra}, metrics.jsonl, loss.png, "
              "sample.txt)")
    return 0
