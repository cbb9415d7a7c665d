"""A translation run's configuration: a TOML file that names its task.

    task = "translation"
    [model]   TransformerConfig's keys (the vocabulary sizes and pad_id come from the tokenizer)
    [train]   TrainConfig's keys (as for the GPT) plus the translation keys of
              TranslationTrainConfig below

`chalklm train --config multi30k_de_en` reads the `task` key and hands the run here;
`--set key=value` and the other flags work as for the GPT. For translation,
`batch_size` and `eval_batch_size` count tokens (padding included), not sentences.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, fields

from chalklm.config import TransformerConfig
from chalklm.errors import ConfigError
from chalklm.training.config import (
    TrainConfig,
    config_path,
    flatten_tables,
    parse_duration,
    parse_toml,
    toml_value,
)

TASK = "translation"
MODEL_KEYS = tuple(f.name for f in fields(TransformerConfig)
                   if f.name not in ("src_vocab_size", "tgt_vocab_size", "pad_id"))


@dataclass
class TranslationTrainConfig(TrainConfig):
    """TrainConfig with the paper's recipe as defaults, plus where the sentence pairs are."""

    data: str = "multi30k"  # "multi30k", or "files" to read train_src/train_tgt/val_*
    src_lang: str = "de"  # the language translated from (Multi30k: de)
    tgt_lang: str = "en"  # the language translated into
    train_src: str = ""  # aligned text files, one sentence a line (data = "files")
    train_tgt: str = ""  # their translations, line by line
    val_src: str = ""  # optional: without them the last pairs of train_* are held out
    val_tgt: str = ""  # their translations
    tokenizer: str = "bpe"  # "bpe" (trained on both languages) or a tokenizer JSON file
    vocab_size: int = 8000  # of the BPE tokenizer trained here
    out: str = "runs/multi30k_de_en"
    batch_size: int = 4096  # tokens per micro-batch, padding included
    eval_batch_size: int = 8192  # tokens per validation batch
    learning_rate: float = 1e-3  # the peak, reached at the end of warmup
    warmup_steps: int = 1000
    schedule: str = "inverse_sqrt"  # the paper's; or "cosine" (the GPT's)
    weight_decay: float = 0.0
    beta1: float = 0.9
    beta2: float = 0.98
    adam_eps: float = 1e-9  # added to Adam's denominator (the paper's 1e-9)
    grad_clip: float = 0.0
    average_last: int = 5  # checkpoints averaged into averaged/ at the end (0: none)
    bleu_sentences: int = 200  # validation sentences translated (greedy) at the end

    def __post_init__(self):
        super().__post_init__()
        if self.schedule not in ("inverse_sqrt", "cosine"):
            raise ConfigError(f"schedule must be inverse_sqrt or cosine, got {self.schedule!r}")
        if self.data not in ("multi30k", "files"):
            raise ConfigError(f"data must be multi30k or files (with train_src, train_tgt "
                              f"and optionally val_src, val_tgt), got {self.data!r}")
        if self.data == "files":
            empty = [k for k in ("train_src", "train_tgt") if not getattr(self, k)]
            if empty or bool(self.val_src) != bool(self.val_tgt):
                missing = empty or [k for k in ("val_src", "val_tgt") if not getattr(self, k)]
                raise ConfigError(f"data = files needs {', '.join(missing)} (paths of aligned "
                                  "text files: --src/--tgt, --val-src/--val-tgt)")
        for key in ("vocab_size", "average_last", "bleu_sentences"):
            if getattr(self, key) < 0:
                raise ConfigError(f"{key} must not be negative, got {getattr(self, key)}")


TRAIN_KEYS = tuple(f.name for f in fields(TranslationTrainConfig))
_TYPES = {f.name: type(f.default)
          for f in fields(TransformerConfig) + fields(TranslationTrainConfig)
          if f.default is not dataclasses.MISSING}


def _checked(key: str, value):
    if key not in _TYPES or key in ("src_vocab_size", "tgt_vocab_size", "pad_id"):
        raise ConfigError(f"unknown translation config key {key!r}; valid keys: "
                          f"{', '.join(sorted(MODEL_KEYS + TRAIN_KEYS))}")
    want = _TYPES[key]
    if key == "time_budget":
        return parse_duration(value)
    if want is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if type(value) is not want:
        kind = {int: "a whole number", float: "a number", bool: "true or false"}.get(want,
                                                                                 "a string")
        raise ConfigError(f"{key} must be {kind}, got {value!r}")
    return value


def config_task(name_or_path: str) -> str:
    """The `task` a config file names: "translation", or "lm" (the GPT) when it names none."""
    return str(parse_toml(config_path(name_or_path)).get("task", "lm"))


def load_translation_config(name_or_path: str, overrides: list[str] = (),
                            **flags) -> tuple[dict, TranslationTrainConfig]:
    """(model keys, TranslationTrainConfig) from the file, then `--set` overrides, then flags
    (None = not given)."""
    path = config_path(name_or_path)
    data = parse_toml(path)
    if data.pop("task", TASK) != TASK:
        raise ConfigError(f"{path}: task must be {TASK!r} here")
    values = flatten_tables(path, data, (("model", MODEL_KEYS), ("train", TRAIN_KEYS)),
                            _checked)
    if data:
        raise ConfigError(f"{path}: unknown table or key {next(iter(data))!r}; a translation "
                          "config has task, [model] and [train]")
    for text in overrides:
        key, sep, raw = text.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {text!r}: expected key=value, e.g. --set n_layer_enc=4")
        key = key.strip()
        values[key] = _checked(key, toml_value(raw, want_str=_TYPES.get(key) is str))
    for key, value in flags.items():
        if value is not None:
            values[key] = _checked(key, value)
    model = {k: v for k, v in values.items() if k in MODEL_KEYS}
    train = TranslationTrainConfig(**{k: v for k, v in values.items() if k in TRAIN_KEYS})
    TransformerConfig(**model)  # check the model keys now, not after the tokenizer
    return model, train
