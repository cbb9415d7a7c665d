"""Run configuration: a TOML file (`chalklm/configs/*.toml`) plus `--set key=value` overrides.

A config file has two tables: `[model]`, whose keys are `GPTConfig`'s fields, and
`[train]`, whose keys are `TrainConfig`'s. On the command line a key is named alone
(`--set n_layer=4 --set learning_rate=3e-3`): the two tables share no key names. An
unknown key or a value of the wrong type is a `ConfigError` that lists what is valid.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, fields
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the same parser, published as tomli
    import tomli as tomllib

from chalklm.config import GPTConfig, preset_keys
from chalklm.errors import ConfigError

# Inside the package, so an installed chalklm (a wheel, not the source folder) finds them.
CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"
DEFAULT_CONFIG = "shakespeare_char"
# `preset` (chalklm.config.PRESETS) names several model keys at once; keys beside it win
MODEL_KEYS = (*(f.name for f in fields(GPTConfig) if f.name != "vocab_size"), "preset")
MAX_SEED = 2**63 - 1  # seeds torch and NumPy both take (torch adds the process rank)
CHOICES = {"engine": ("torch", "scratch"), "device": ("cpu", "cuda", "auto"),
           "dtype": ("fp32", "bf16", "auto")}  # the values each of these train keys allows


@dataclass
class TrainConfig:
    """Everything about a training run except the model's shape."""

    data: str = "shakespeare"  # a dataset name or a text file
    tokenizer: str = "char"  # char, bpe, or a tokenizer JSON file
    out: str = "runs/shakespeare_char"  # the run folder: checkpoints, metrics, loss.png
    engine: str = "torch"  # torch (fast) or scratch (the glass box)
    device: str = "auto"  # cpu, cuda or auto (a CUDA GPU if PyTorch sees one, else the CPU)
    dtype: str = "auto"  # fp32, bf16 or auto (bf16 where the hardware has it)
    compile: bool | str = False  # torch.compile: true, false or "auto" (compile_pays_off)
    seed: int = 1337  # seeds the weights, the batches and dropout: same seed, same run
    batch_size: int = 32  # sequences per micro-batch
    grad_accum: int = 1  # micro-batches per optimizer step
    max_steps: int = 5000  # optimizer steps; a time budget may end the run first
    time_budget: float = 0.0  # seconds; 0 = no limit. Also accepts "5m", "90s", "1h"
    learning_rate: float = 1e-3  # the peak, reached at the end of warmup
    min_lr: float = 1e-4  # where cosine decay ends
    warmup_steps: int = 100  # steps over which the learning rate rises linearly to its peak
    decay_steps: int = 0  # length of the cosine decay in steps; 0 = max_steps
    weight_decay: float = 0.1  # AdamW's weight decay, on matrices only
    beta1: float = 0.9  # AdamW's moving average of the gradients
    beta2: float = 0.99  # AdamW's moving average of the squared gradients
    grad_clip: float = 1.0  # the largest gradient norm a step takes; 0 = no clipping
    eval_interval: int = 500  # steps between full validation passes
    log_interval: int = 10  # steps between lines of metrics.jsonl
    eval_batch_size: int = 64  # sequences per validation batch
    sample_tokens: int = 500  # text sampled at the end of training; 0 = none

    def __post_init__(self):
        self.time_budget = parse_duration(self.time_budget)
        for key, allowed in CHOICES.items():
            if getattr(self, key) not in allowed:
                raise ConfigError(f"{key} must be one of {', '.join(allowed)}, "
                                  f"got {getattr(self, key)!r}")
        _check_compile(self.compile)
        for key in ("batch_size", "grad_accum", "max_steps", "eval_interval", "log_interval",
                    "eval_batch_size"):
            if getattr(self, key) <= 0:
                raise ConfigError(f"{key} must be above 0, got {getattr(self, key)}")
        for key in ("warmup_steps", "decay_steps", "weight_decay", "grad_clip", "sample_tokens"):
            if getattr(self, key) < 0:
                raise ConfigError(f"{key} must not be negative, got {getattr(self, key)}")
        if not 0 <= self.seed <= MAX_SEED:
            raise ConfigError(f"seed must be a whole number from 0 to {MAX_SEED} (2**63-1), "
                              f"got {self.seed}")
        if not self.learning_rate > 0:
            raise ConfigError(f"learning_rate must be above 0, got {self.learning_rate}")
        if not 0 <= self.min_lr <= self.learning_rate:
            raise ConfigError(f"min_lr must be in [0, learning_rate], got {self.min_lr}")
        for key in ("beta1", "beta2"):  # AdamW's moving averages: 0 forgets at once, 1 never
            if not 0 <= getattr(self, key) < 1:
                raise ConfigError(f"{key} must be in [0, 1), got {getattr(self, key)}")


TRAIN_KEYS = tuple(f.name for f in fields(TrainConfig))
_UNITS = {"s": 1, "m": 60, "h": 3600}


def parse_duration(value) -> float:
    """Seconds from 300, "300", "300s", "5m", "1.5h"."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    else:
        match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([smh]?)\s*", str(value))
        if not match:
            raise ConfigError(f"time_budget {value!r} is not a duration; write e.g. 300, 90s, "
                              "5m or 1h")
        seconds = float(match[1]) * _UNITS[match[2] or "s"]
    if seconds < 0:
        raise ConfigError(f"time_budget must not be negative, got {value!r}")
    return seconds


def _field_types(cls) -> dict[str, type]:
    return {f.name: type(f.default) for f in fields(cls) if f.default is not dataclasses.MISSING}


_TYPES = {**_field_types(GPTConfig), **_field_types(TrainConfig)}
_TYPES["time_budget"] = str  # "5m" or a number: parse_duration checks it
_TYPES["compile"] = bool  # or "auto": _check_type lets it through
_TYPES.update(ffn_dim=int, n_kv_head=int, preset=str)  # (None by default: automatic)
AUTO_COMPILE_STEPS = 2000
AUTO_COMPILE_BUDGET_S = 120


def compile_pays_off(cfg: TrainConfig) -> bool:
    """What `compile = "auto"` decides: compile when the run is long enough to win back the
    compiling, at least AUTO_COMPILE_STEPS steps and, under a time budget, at least
    AUTO_COMPILE_BUDGET_S. Compiling the default model takes 7-30 s on a 2-core CPU (less
    once inductor's cache holds its kernels); each step then runs ~17% faster."""
    long_budget = not cfg.time_budget or cfg.time_budget >= AUTO_COMPILE_BUDGET_S
    return cfg.max_steps >= AUTO_COMPILE_STEPS and long_budget


def _check_compile(value):
    """true, false or "auto" (and not 1 or 0, which equal true and false)."""
    if value not in (True, False, "auto") or type(value) not in (bool, str):
        raise ConfigError(f'compile must be true, false or "auto", got {value!r}')
    return value


def _check_type(key: str, value):
    want = _TYPES[key]
    if want is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if want is str and key == "time_budget" and isinstance(value, (int, float)):
        return value
    if key == "compile":
        return _check_compile(value)
    if type(value) is not want:
        kind = {int: "a whole number", float: "a number", bool: "true or false"}.get(want,
                                                                                 "a string")
        raise ConfigError(f"{key} must be {kind}, got {value!r}")
    return value


def _unknown(key: str) -> ConfigError:
    return ConfigError(f"unknown config key {key!r}; valid keys: "
                       f"{', '.join(sorted(MODEL_KEYS + TRAIN_KEYS))}")


def parse_override(text: str) -> tuple[str, object]:
    """`key=value` -> (key, value); the value is read as TOML, else taken as a string."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"--set {text!r}: expected key=value, e.g. --set n_layer=4")
    if key not in _TYPES or key == "vocab_size":
        raise _unknown(key)
    value = toml_value(raw, want_str=_TYPES[key] is str and key != "time_budget")
    return key, _check_type(key, value)


def toml_value(raw: str, want_str: bool = False):
    """A `--set` value: read as TOML (numbers, booleans), else taken as the plain string."""
    try:
        value = tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()
    if want_str and not isinstance(value, str):
        value = raw.strip()
    return value


def config_path(name_or_path: str) -> Path:
    """A config by name (`shakespeare_char`, from chalklm/configs/) or by path."""
    path = Path(name_or_path)
    if path.suffix != ".toml":
        path = CONFIG_DIR / f"{name_or_path}.toml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in CONFIG_DIR.glob("*.toml")))
        raise ConfigError(f"config {name_or_path!r} not found (known: {known}; or give a "
                          ".toml path)")
    return path


def parse_toml(path: Path) -> dict[str, object]:
    """A TOML file as a dict; invalid TOML is a one-line ConfigError."""
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not valid UTF-8 at byte {exc.start}; a config is UTF-8 "
                          "text (convert it, e.g. with iconv -t UTF-8)") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read ({exc.strerror})") from None


def flatten_tables(path: Path, data: dict, tables, check) -> dict[str, object]:
    """Pop each (table, allowed keys) of `data` into one flat dict, every value `check`ed."""
    flat = {}
    for table, allowed in tables:
        for key, value in data.pop(table, {}).items():
            if key not in allowed:
                raise ConfigError(f"{path}: [{table}] has unknown key {key!r}; valid keys: "
                                  f"{', '.join(allowed)}")
            flat[key] = check(key, value)
    return flat


def read_toml(path: Path) -> dict[str, object]:
    """The flat key -> value dict of a config file, checked."""
    data = parse_toml(path)
    flat = flatten_tables(path, data, (("model", MODEL_KEYS), ("train", TRAIN_KEYS)),
                          _check_type)
    if data:
        raise ConfigError(f"{path}: unknown table or key {next(iter(data))!r}; "
                          "a config has [model] and [train] tables")
    return flat


def with_preset(layer: dict, below: dict) -> dict:
    """One layer of keys (a config file, or the --set keys) with its `preset` spelled out
    beneath the layer's own keys: a preset beats the layers below, never its own layer."""
    layer = dict(layer)
    name = layer.pop("preset", None)
    if name is None:
        return layer
    n_head = layer.get("n_head", below.get("n_head", GPTConfig.n_head))
    return {**preset_keys(name, n_head), **layer}


def load_run_config(name_or_path: str = DEFAULT_CONFIG, overrides: list[str] = (),
                    **flags) -> tuple[dict, TrainConfig]:
    """(model keys dict, TrainConfig) from a config file, then `--set` overrides, then flags
    given on the command line (None means "not given"). vocab_size comes from the tokenizer."""
    values = with_preset(read_toml(config_path(name_or_path)), {})
    values.update(with_preset(dict(parse_override(text) for text in overrides), values))
    for key, value in flags.items():
        if value is not None:
            values[key] = _check_type(key, value)
    model = {k: v for k, v in values.items() if k in MODEL_KEYS}
    train = TrainConfig(**{k: v for k, v in values.items() if k in TRAIN_KEYS})
    GPTConfig(vocab_size=1, **model)  # check the model keys now, not after tokenizing
    return model, train
