"""The training loop: batches in, a lower loss and checkpoints out.

    for each step:
        lr   = warmup, then cosine decay (over steps, or over the time budget)
        loss = mean cross-entropy over grad_accum micro-batches; backward; clip; AdamW
        every log_interval steps: a line in metrics.jsonl
        every eval_interval steps: loss over the whole validation split, checkpoints

The run folder (`--out`) holds `last/` (the newest checkpoint, for --resume), `best/`
(the lowest validation loss), `metrics.jsonl`, `loss.png` and `sample.txt`.
"""

from __future__ import annotations

import math
import signal
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

from chalklm.checkpoint import (
    OPTIMIZER_FILE,
    TRAINER_STATE_FILE,
    load_checkpoint,
    save_checkpoint,
)
from chalklm.config import GPTConfig
from chalklm.data.batches import TokenBatches, load_tokens
from chalklm.errors import ChalkError, CheckpointError, ConfigError
from chalklm.files import write_atomic
from chalklm.training import run_folder
from chalklm.training.config import TrainConfig
from chalklm.training.distributed import Distributed
from chalklm.training.progress import is_terminal, progress_display
from chalklm.training.report import MetricsLog, measured_peak_flops, plot_losses

FINAL_EVAL_MARGIN_S = 2.0  # seconds kept back from a time budget for saving


# What asks a run to stop: Ctrl-C, and SIGTERM, which `kill`, `timeout`, `docker stop` and
# job schedulers send before they kill a process.
STOP_SIGNALS = {signal.SIGINT: "Ctrl-C", signal.SIGTERM: "SIGTERM"}


@contextmanager
def stop_requests(trainer):
    """The first Ctrl-C or SIGTERM sets `trainer.interrupted`: the step in progress
    finishes, then the run evaluates and saves as at the end of a time budget. A second one
    stops at once (the handlers before the run are back by then).
    Not under torchrun: the processes would stop at different steps and wait on each other."""
    if trainer.dist.enabled or threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {signum: signal.getsignal(signum) for signum in STOP_SIGNALS}

    def restore():
        for signum, handler in previous.items():
            signal.signal(signum, handler)

    def request_stop(signum, frame):
        trainer.interrupted = True
        restore()
        print(f"\n{STOP_SIGNALS[signum]}: stopping after this step (evaluate, save); "
              "again to abort", file=sys.stderr)

    for signum in STOP_SIGNALS:
        signal.signal(signum, request_stop)
    try:
        yield
    finally:
        restore()


def learning_rate(step: int, progress: float, cfg: TrainConfig) -> float:
    """Linear warmup over `warmup_steps`, then cosine from learning_rate down to min_lr.

    `progress` in [0, 1] is how far the run is (by steps, or by its time budget)."""
    warmup = min(1.0, (step + 1) / cfg.warmup_steps) if cfg.warmup_steps > 0 else 1.0
    cosine = 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return warmup * (cfg.min_lr + (cfg.learning_rate - cfg.min_lr) * cosine)


def build_tokenizer(spec: str, data: str, progress: bool = True):
    """`char` or `bpe` (trained on the dataset's text) or a tokenizer JSON file."""
    from chalklm.data import load_text
    from chalklm.tokenizers import CharTokenizer, load_tokenizer

    if spec == "char":
        return CharTokenizer(load_text(data))
    if spec == "bpe":
        from chalklm.tokenizers import BPETokenizer

        return BPETokenizer.train(load_text(data), vocab_size=512, progress=progress)
    return load_tokenizer(spec)


def make_engine(model_config, cfg, device, dtype, dist):
    if cfg.engine == "scratch":
        from chalklm.training.scratch_engine import ScratchEngine

        return ScratchEngine(model_config, cfg, dist)
    from chalklm.training.engines import TorchEngine

    return TorchEngine(model_config, cfg, device, dtype, dist)


def resumed(out: Path, kind: type):
    """The checkpoint in `out`/last that --resume continues; it must hold a model of `kind`
    (a GPT config cannot continue a translation run, nor the reverse)."""
    checkpoint = load_checkpoint(out / "last")
    if not isinstance(checkpoint.config, kind):
        raise ConfigError(f"--resume: {out} holds a {checkpoint.config.model_type!r} run, not a "
                          f"{kind.model_type!r} one; resume it with the --config it was "
                          "trained with")
    return checkpoint


def check_same_model(model_keys: dict, config) -> None:
    """--resume continues the checkpoint's model; a config that says otherwise is an error."""
    for key, value in model_keys.items():
        if getattr(config, key) != value:
            raise ConfigError(f"--resume: the checkpoint's model has {key}={getattr(config, key)!r}"
                              f" but the config says {value!r}; resume with the same config")


# What a fine-tuning run may change of the model it starts from: a shorter context (a
# long-context model trained on short texts) and dropout.
FINE_TUNE_KEYS = ("block_size", "dropout")


def _starting_point(folder, changes: dict) -> tuple:
    """(checkpoint, model config, weights) of the model a fine-tuning run starts from
    (--init-from): a GPT with its tokenizer, changed by `changes` (FINE_TUNE_KEYS only)."""
    from chalklm.checkpoint import TOKENIZER_FILE, resolve

    if not (resolve(folder) / TOKENIZER_FILE).is_file():
        raise ConfigError(f"{folder}: no {TOKENIZER_FILE}; --init-from reads the text with the "
                          "checkpoint's own tokenizer")
    start = load_checkpoint(folder)
    if not isinstance(start.config, GPTConfig):
        raise ConfigError(f"{start.path}: a {start.config.model_type!r} model; --init-from "
                          "fine-tunes GPT checkpoints")
    refused = sorted(set(changes) - set(FINE_TUNE_KEYS))
    if refused:
        raise ConfigError(f"--init-from takes the model from the checkpoint; of its keys only "
                          f"{' and '.join(FINE_TUNE_KEYS)} may change, not {refused[0]}")
    config = start.config.replace(**changes)
    if config.block_size > start.config.block_size:
        raise ConfigError(f"block_size {config.block_size} is longer than the checkpoint's "
                          f"context ({start.config.block_size})")
    weights = dict(start.weights)
    if "position_embedding.weight" in weights:  # learned positions: keep the first rows
        weights["position_embedding.weight"] = weights["position_embedding.weight"][
            :config.block_size]
    return start, config, weights


class LanguageModelTask:
    """What the trainer learns, for a GPT on one text: its data, its model (the engine),
    how many targets a batch's loss counts, its schedule and its sample. The trainer runs
    the loop, checkpoints, resume and metrics for every task; translation is the other
    (chalklm/translation/training.py).
    `init_from`: a checkpoint folder to fine-tune: its model, weights and tokenizer replace
    cfg.tokenizer, and `model_keys` are then only changes to its model (FINE_TUNE_KEYS)."""

    config_type = GPTConfig  # the kind of model a run of this task holds

    def __init__(self, init_from=None):
        self.init_from = init_from
        self.start_weights = None  # a fine-tuning run's first weights

    def prepare(self, trainer, model_keys: dict, checkpoint) -> None:
        """The trainer's tokenizer, model_config, train_data and val_data, from the config
        (or from `checkpoint`, the run being resumed)."""
        cfg, resume = trainer.cfg, checkpoint is not None
        start = _starting_point(self.init_from, model_keys) if self.init_from and not resume \
            else None
        trainer.tokenizer = checkpoint.tokenizer if resume else start[0].tokenizer if start \
            else build_tokenizer(cfg.tokenizer, cfg.data, trainer.setup_progress)
        tokens = load_tokens(cfg.data, trainer.tokenizer)
        if resume:
            trainer.model_config = checkpoint.config
            if self.init_from is None:  # a fine-tuned model is its starting checkpoint's
                check_same_model(model_keys, checkpoint.config)
        elif start:
            trainer.model_config, self.start_weights = start[1], start[2]
        else:
            trainer.model_config = GPTConfig(vocab_size=trainer.tokenizer.vocab_size,
                                             **model_keys)
        T = trainer.model_config.block_size
        trainer.train_data = TokenBatches(tokens, T, "train")
        trainer.val_data = TokenBatches(tokens, T, "val")

    def engine(self, trainer):
        return make_engine(trainer.model_config, trainer.cfg, trainer.device, trainer.dtype,
                           trainer.dist)

    def targets(self, y) -> int:
        """How many targets a batch's loss averages over: every position of every row."""
        return y.size

    def learning_rate(self, trainer) -> float:
        return learning_rate(trainer.step, trainer.progress(), trainer.cfg)

    def sample(self, trainer) -> str:
        """Text generated from the start (as `chalklm sample` with no prompt): sample.txt."""
        from chalklm.generation import beginning, generate

        start = beginning(trainer.tokenizer)[0]  # what an empty prompt starts from, everywhere
        new = generate(trainer.engine.next_logits, start, trainer.cfg.sample_tokens,
                       block_size=trainer.model_config.block_size, temperature=0.8, top_k=50,
                       seed=trainer.cfg.seed)[0]
        text = trainer.tokenizer.decode(start + new)
        write_atomic(trainer.out / "sample.txt", text)
        return text

    def saved(self, trainer, name: str) -> None:
        """After a checkpoint is written (translation keeps the last ones to average)."""

    def finished(self, trainer, summary: dict) -> None:
        """After the run's last save, on the main process (translation averages there)."""


class Trainer:
    """One training run: `Trainer(model_keys, cfg, resume=False).run()` -> summary dict.
    `force`: train into a folder that is not a run, or start a run's folder over.
    `task`: what is learned (LanguageModelTask by default, made with `init_from`, a
    checkpoint folder to fine-tune; the run is then new: a fresh optimizer, step 0).
    `progress=False` (`--no-progress`): no bars while the data is prepared either (the
    training's own progress is `run`'s `progress`)."""

    def __init__(self, model_keys: dict, cfg, resume: bool = False, force: bool = False,
                 init_from=None, task=None, progress: bool = True):
        self.task = task if task is not None else LanguageModelTask(init_from)
        self.cfg, self.out = cfg, Path(cfg.out)
        run_folder.check(cfg.out, resume, force)
        self.device, self.dtype = self._device_and_dtype()
        self.dist = Distributed.from_env(self.device)
        if self.dist.enabled and self.device.startswith("cuda"):
            self.device = self.dist.device  # one GPU per process: cuda:<local rank>
        self._claim_out_folder(resume)
        # bars while tokenizing: on a terminal only (piped, their frames would all stay)
        self.setup_progress = progress and self.dist.is_main and is_terminal(sys.stderr)
        checkpoint = resumed(self.out, self.task.config_type) if resume else None
        self.task.prepare(self, model_keys, checkpoint)
        self.engine = self.task.engine(self)
        self.metrics = MetricsLog(self.out / "metrics.jsonl")
        self.step, self.elapsed, self.best_val = 0, 0.0, math.inf
        if resume:
            self._restore(checkpoint)
        elif self.task.start_weights is not None:
            self.engine.load_weights(self.task.start_weights)

    def _claim_out_folder(self, resume: bool) -> None:
        """Before any work: the folder is made, tidied and marked (see run_folder)."""
        if self.dist.is_main:
            run_folder.claim(self.cfg.out, resume)
        self.dist.barrier()

    def _device_and_dtype(self) -> tuple[str, str]:
        if self.cfg.engine == "scratch":
            return "cpu", "fp32"
        from chalklm.device import resolve_device, resolve_dtype

        device = resolve_device(self.cfg.device)
        return device, resolve_dtype(self.cfg.dtype, device)

    # ---- saving and resuming -------------------------------------------------------

    def _trainer_state(self) -> dict:
        return {"step": self.step, "elapsed": self.elapsed, "best_val": self.best_val,
                "rng": self.engine.rng_state(), "seed": self.cfg.seed,
                "batches_drawn": self.step * self.cfg.grad_accum * self.dist.world_size}

    def save(self, name: str, with_optimizer: bool = True) -> None:
        if not self.dist.is_main:
            return
        save_checkpoint(self.out / name, self.engine.weights(), self.model_config,
                        self.tokenizer,
                        self.engine.optimizer_state() if with_optimizer else None,
                        self._trainer_state())
        self.task.saved(self, name)

    def _restore(self, checkpoint) -> None:
        optimizer, state = checkpoint.resume_state()
        try:
            self.engine.load_weights(checkpoint.weights)
            self.engine.load_optimizer_state(optimizer)
            self.engine.set_rng_state(state["rng"])
            self.step, self.elapsed = int(state["step"]), float(state["elapsed"])
            self.best_val = float(state["best_val"])
            self.cfg.seed = int(state["seed"])  # the batches to come depend on the run's seed
        except (KeyError, TypeError, ValueError, IndexError, RuntimeError) as exc:
            raise CheckpointError(  # a file edited or damaged by hand: no way to continue
                f"{checkpoint.path}: {TRAINER_STATE_FILE} or {OPTIMIZER_FILE} is damaged "
                f"({type(exc).__name__}: {exc}); it cannot be resumed: restore the folder, or "
                "start over with --force") from None
        if self.dist.is_main:
            self.metrics.truncate_after(self.step)
            self._warn_if_batches_differ(state.get("batches_drawn"))

    def _warn_if_batches_differ(self, drawn) -> None:
        """A run saved by N processes x accumulation A continues exactly only with the same
        N x A: each step draws N x A micro-batches, so another product means other batches
        and another number of tokens per step. Allowed (a run may move to more GPUs), but
        said."""
        per_step = self.cfg.grad_accum * self.dist.world_size
        if drawn is None or drawn == self.step * per_step:
            return
        before = drawn // max(1, self.step)
        print(f"note: up to step {self.step} this run took {before} micro-batch(es) a step "
              f"(processes x grad_accum); it now takes {per_step}, so the steps from here "
              "differ from an uninterrupted run's", file=sys.stderr)

    # ---- the loop ------------------------------------------------------------------

    def micro_batches(self, step: int):
        """This process's micro-batches of `step`. Batch numbers interleave processes so
        N processes x accumulation A draw exactly what 1 process x (N*A) would."""
        cfg, d = self.cfg, self.dist
        first = (step * d.world_size + d.rank) * cfg.grad_accum
        return [self.train_data.batch(cfg.batch_size, cfg.seed, first + m)
                for m in range(cfg.grad_accum)]

    def evaluate(self) -> float:
        """Mean loss per target over the validation split (shared among processes)."""
        total, count = 0.0, 0
        for i, (x, y) in enumerate(self.val_data.sequential(self.cfg.eval_batch_size)):
            if i % self.dist.world_size == self.dist.rank:
                total += self.engine.loss_sum(x, y)
                count += self.task.targets(y)
        return self.dist.sum(total) / self.dist.sum(count)

    def time_used(self) -> float:
        """The share of the time budget spent, counting the final evaluation's share."""
        return self.elapsed / max(1e-9, self.cfg.time_budget - self.reserve_s)

    def progress(self) -> float:
        """How far the learning-rate schedule is: by steps, or by time under a budget."""
        by_steps = self.step / (self.cfg.decay_steps or self.cfg.max_steps)
        return max(by_steps, self.time_used()) if self.cfg.time_budget else by_steps

    def run(self, progress: bool = True) -> dict:
        """Train, evaluate, save; `progress=False` shows no progress (`--no-progress`)."""
        # time kept back for the final evaluation; the same on every process, so all stop
        # at the same step
        self.reserve_s = self.dist.max(self._estimate_eval_seconds() + FINAL_EVAL_MARGIN_S)
        bar = self._progress_bar(progress and self.dist.is_main)
        self.interrupted = False
        try:
            with stop_requests(self):
                stop_reason = self._loop(bar)
        finally:
            bar.close()  # before any error message, so that is a line of its own
        return self._finish(stop_reason)

    def _loop(self, bar) -> str:
        """Steps until max_steps, the time budget or a Ctrl-C; returns which one."""
        cfg = self.cfg
        tokens_per_step, peak = self.tokens_per_step(), self._peak_flops()
        loop_start, elapsed_before = time.perf_counter(), self.elapsed
        last_good, stop_reason = self.step, "max_steps"
        window_start, window_steps = time.perf_counter(), 0
        while self.step < cfg.max_steps:
            if cfg.time_budget and self.time_used() >= 1.0:
                stop_reason = "time_budget"
                break
            if self.interrupted:
                stop_reason = "interrupt"
                break
            lr = self.learning_rate()
            loss, grad_norm = self.engine.train_step(self.micro_batches(self.step), lr)
            self.step += 1
            # wall time, evaluations included; the slowest process's, so all agree
            self.elapsed = elapsed_before + self.dist.max(time.perf_counter() - loop_start)
            window_steps += 1
            if not (math.isfinite(loss) and math.isfinite(grad_norm)):
                self._stop_on_divergence(loss, last_good, bar)
            record = None
            if self.step % cfg.log_interval == 0 or self.step == cfg.max_steps:
                seconds = time.perf_counter() - window_start
                tok_s = tokens_per_step * window_steps / seconds
                record = {"step": self.step, "train_loss": loss, "lr": lr,
                          "grad_norm": grad_norm, "tokens_per_s": round(tok_s),
                          "mfu": self.engine.flops_per_token() * tok_s / peak if peak else None,
                          "elapsed_s": round(self.elapsed, 2)}
                window_start, window_steps = time.perf_counter(), 0
                bar.set_postfix_str(self._postfix(record))
            if self.step % cfg.eval_interval == 0 and self.step < cfg.max_steps:
                record = self._eval_and_save(record or {"step": self.step, "lr": lr})
                last_good = self.step
                if self.dist.is_main:  # a plain line that stays, above the live bar
                    bar.write(f"step {self.step}: validation loss {record['val_loss']:.4f} "
                              f"(best {self.best_val:.4f})")
                window_start, window_steps = time.perf_counter(), 0
            if record is not None and self.dist.is_main:
                self.metrics.write(record)
            bar.update(self.elapsed - bar.n if cfg.time_budget else 1)
        return stop_reason

    def _progress_bar(self, show: bool):
        """Steps out of max_steps; or, under a time budget, seconds out of the budget."""
        if self.cfg.time_budget:
            return progress_display(round(self.cfg.time_budget), self.elapsed, "s", show,
                                    bar_format="{l_bar}{bar}| {n:.0f}/{total}s{postfix}")
        return progress_display(self.cfg.max_steps, self.step, "step", show)

    def learning_rate(self) -> float:
        """This step's learning rate (the task's schedule)."""
        return self.task.learning_rate(self)

    def tokens_per_step(self) -> int:
        """Targets per optimizer step: the mean over the first batches (a translation
        batch's size is a budget that counts padding and the source too)."""
        cfg = self.cfg
        batches = [self.train_data.batch(cfg.batch_size, cfg.seed, i) for i in range(20)]
        mean = sum(self.task.targets(y) for _, y in batches) / len(batches)
        return round(mean * cfg.grad_accum * self.dist.world_size)

    def _postfix(self, r: dict) -> str:
        left = max(0.0, (1 - self.progress()) * (self.cfg.time_budget or 0))
        if not self.cfg.time_budget and self.step:
            left = self.elapsed / self.step * (self.cfg.max_steps - self.step)
        mfu = f" mfu {100 * r['mfu']:.0f}%" if r.get("mfu") is not None else ""
        left = f"{left:.0f}s" if left < 120 else f"{left / 60:.1f}m"
        return (f"step {self.step} loss {r['train_loss']:.3f} {r['tokens_per_s']:,} tok/s{mfu} "
                f"left {left}")

    def _eval_and_save(self, record: dict) -> dict:
        started = time.perf_counter()
        val = self.evaluate()
        self.reserve_s = self.dist.max(time.perf_counter() - started + FINAL_EVAL_MARGIN_S)
        if val < self.best_val:
            self.best_val = val
            self.save("best", with_optimizer=False)
        self.save("last")
        return {**record, "val_loss": val}

    def _stop_on_divergence(self, loss: float, last_good: int, bar) -> None:
        bar.close()
        where = (f"the last good checkpoint (step {last_good}) is in {self.out / 'last'}"
                 if last_good else "no checkpoint was saved yet")
        raise ChalkError(f"training diverged: the loss became {loss} at step {self.step}; "
                         f"stopped, {where}. Try a lower learning_rate or grad_clip")

    def _finish(self, stop_reason: str) -> dict:
        started = time.perf_counter()
        val = self.evaluate()
        if val < self.best_val:
            self.best_val = val
            self.save("best", with_optimizer=False)
        self.save("last")
        eval_s = time.perf_counter() - started
        summary = {"step": self.step, "val_loss": val, "best_val_loss": self.best_val,
                   "stopped_by": stop_reason, "train_seconds": round(self.elapsed, 2),
                   "final_eval_seconds": round(eval_s, 2), "device": self.device,
                   "dtype": self.dtype, "engine": self.cfg.engine}
        if self.dist.is_main:
            self.metrics.write({"step": self.step, "val_loss": val})
            plot_losses(self.metrics.read(), self.out / "loss.png")
            summary["sample"] = self.task.sample(self) if self.cfg.sample_tokens else ""
            self.task.finished(self, summary)
        self.dist.barrier()
        self.dist.close()
        return summary

    def _peak_flops(self) -> float | None:
        if self.cfg.engine != "torch":
            return None
        return measured_peak_flops(self.device, self.dtype)

    def _estimate_eval_seconds(self) -> float:
        """Time of a full validation pass, from timing one eval batch (for the budget)."""
        if not self.cfg.time_budget:
            return 0.0
        batches = self.val_data.sequential(self.cfg.eval_batch_size)
        x, y = next(batches)
        self.engine.loss_sum(x, y)  # warm up
        started = time.perf_counter()
        self.engine.loss_sum(x, y)
        per_token = (time.perf_counter() - started) / y.size
        return per_token * len(self.val_data) / self.dist.world_size
