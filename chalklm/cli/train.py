"""`chalklm train`: train a GPT from a config file, on one process or under torchrun."""

from __future__ import annotations

import argparse

from chalklm.cli.common import positive_int, seed
from chalklm.errors import ConfigError


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "train", help="train a GPT (default: characters of Tiny Shakespeare on this CPU)",
        description="Train a GPT. Settings come from a TOML config (chalklm/configs/), then --set "
        "overrides, then the flags below. Ctrl-C or SIGTERM (kill, timeout, a job "
        "scheduler) stops after the step in progress, then evaluates and saves; a second "
        "one aborts. Distributed: torchrun --nproc_per_node=N -m chalklm train ...",
    )
    p.add_argument("--config", default="shakespeare_char",
                   help="a config name (one of chalklm/configs/) or a .toml path "
                        "(default: %(default)s)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override any config key, e.g. --set n_layer=4 (repeatable)")
    p.add_argument("--data", help="dataset name (shakespeare, python-docs) or a text file")
    p.add_argument("--tokenizer", help="char, bpe, or a tokenizer JSON file")
    p.add_argument("--out", help="run folder for checkpoints, metrics, plots")
    p.add_argument("--max-steps", type=positive_int, help="optimizer steps to run")
    p.add_argument("--time-budget", help="stop cleanly after this long, e.g. 5m, 300s, 1h")
    p.add_argument("--resume", action="store_true", help="continue the run in --out exactly")
    p.add_argument("--init-from", metavar="DIR",
                   help="fine-tune this checkpoint (trained or imported with import-hf): its "
                        "model, weights and tokenizer, on --data, in a new run folder --out")
    p.add_argument("--force", action="store_true",
                   help="train into an --out that is not empty and not a chalklm run, or "
                        "start a run's folder over (its best/, last/, metrics.jsonl, loss.png "
                        "and sample.txt are replaced)")
    p.add_argument("--device", choices=["cpu", "cuda", "auto"],
                   help="where to train; auto: a CUDA GPU if PyTorch sees one, else the CPU")
    p.add_argument("--dtype", choices=["fp32", "bf16", "auto"],
                   help="number format of the products (bf16 autocast keeps fp32 weights); "
                        "auto: bf16 where the device computes it natively, else fp32")
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                   help="torch.compile the model (default: as the config says; "
                        "shakespeare_char compiles runs of 2000+ steps and 2+ minutes); on a "
                        "CPU this needs a C++ compiler")
    p.add_argument("--engine", choices=["torch", "scratch"],
                   help="torch (fast) or scratch (the NumPy glass box: slow but visible)")
    p.add_argument("--seed", type=seed,
                   help="seeds the weights, the batches and dropout: same seed, same run")
    p.add_argument("--no-progress", action="store_true",
                   help="show no progress (by default a bar on a terminal; piped to a file, "
                        "a plain line every 10 s)")
    pairs = p.add_argument_group("translation configs: aligned text files, one sentence a line")
    pairs.add_argument("--src", metavar="FILE", help="source sentences (e.g. German)")
    pairs.add_argument("--tgt", metavar="FILE", help="their translations, line by line")
    pairs.add_argument("--val-src", metavar="FILE",
                       help="validation sources (default: hold out the last 5%% of --src)")
    pairs.add_argument("--val-tgt", metavar="FILE", help="validation translations")
    p.set_defaults(func=run)


def _check_init_from(args) -> None:
    """--init-from brings the model and the tokenizer; flags that would set them are errors."""
    if args.tokenizer:
        raise ConfigError("--init-from fine-tunes with the checkpoint's own tokenizer (its ids "
                          "are what the model learned); leave out --tokenizer")
    if not args.out:
        raise ConfigError("--init-from needs --out, the new run's folder (the checkpoint you "
                          "start from stays as it is)")
    if args.src or args.tgt:
        raise ConfigError("--init-from fine-tunes a GPT on --data FILE, not translation pairs")


def _model_changes(overrides: list[str]) -> dict:
    """The model keys given with --set: with --init-from, changes to the checkpoint's model."""
    from chalklm.training.config import MODEL_KEYS, parse_override

    return {key: value for key, value in map(parse_override, overrides) if key in MODEL_KEYS}


def run(args) -> int:
    from chalklm.translation.config import config_task

    if args.resume and args.tokenizer:
        raise ConfigError("--resume continues with the checkpoint's own tokenizer (its ids are "
                          "what the model learned); leave out --tokenizer")
    if args.init_from:
        _check_init_from(args)
    if config_task(args.config) == "translation":  # the config names its task
        from chalklm.translation.training import run_cli

        return run_cli(args)
    if any((args.src, args.tgt, args.val_src, args.val_tgt)):
        raise ConfigError("--src/--tgt are for translation configs (e.g. --config "
                          "multi30k_de_en); a GPT reads one text: --data FILE")
    from chalklm.training.config import load_run_config, parse_duration
    from chalklm.training.trainer import Trainer

    budget = None if args.time_budget is None else parse_duration(args.time_budget)
    model_keys, cfg = load_run_config(
        args.config, args.overrides, data=args.data, tokenizer=args.tokenizer, out=args.out,
        max_steps=args.max_steps, time_budget=budget, device=args.device, dtype=args.dtype,
        compile=args.compile, engine=args.engine, seed=args.seed,
    )
    if args.init_from:
        model_keys = _model_changes(args.overrides)
    trainer = Trainer(model_keys, cfg, resume=args.resume, force=args.force,
                      init_from=args.init_from, progress=not args.no_progress)
    summary = trainer.run(progress=not args.no_progress)
    if trainer.dist.is_main:
        sample = summary.pop("sample", "")
        if sample:
            print(f"\n--- sample ---\n{sample}\n---")
        print(f"step {summary['step']}: validation loss {summary['val_loss']:.4f} "
              f"(best {summary['best_val_loss']:.4f}) after {summary['train_seconds']:.0f}s "
              f"on {summary['device']} {summary['dtype']}, stopped by {summary['stopped_by']}")
        written = "best/, last/, metrics.jsonl, loss.png" + (", sample.txt" if sample else "")
        print(f"run folder: {cfg.out} ({written})")
    return 0
