"""Write docs/config.md, the reference of every config key, from the config classes.

    python docs/config_reference.py            # writes docs/config.md
    python docs/config_reference.py --check    # exit 1 if docs/config.md is out of date

A key's line of meaning is the comment written beside its field in the class (or, when the
line has none, the comment lines just above it): the reference is kept where the field is,
and a field without a comment stops this script. The keys listed are the ones a config
file accepts (chalklm/training/config.py and chalklm/translation/config.py say which);
the defaults are the classes', the shipped configs' values are read from their files.
tests/test_config_reference.py fails when docs/config.md is not what this writes now.
"""

from __future__ import annotations

import argparse
import ast
import inspect
import io
import sys
import textwrap
import tokenize
from dataclasses import MISSING, fields
from pathlib import Path

from chalklm import config as model_config
from chalklm.training import config as train_config
from chalklm.translation import config as translation_config

OUTPUT = Path(__file__).resolve().parent / "config.md"
FIX = "python docs/config_reference.py"

# the values a key allows, where a tuple of them is named in the code
CHOICES = {
    model_config.GPTConfig: {"positional": model_config.GPT_POSITIONAL_KINDS,
                             "norm": model_config.NORMS, "mlp": model_config.MLPS,
                             "activation": model_config.ACTIVATIONS},
    model_config.TransformerConfig: {"positional": model_config.POSITIONAL_KINDS,
                                     "activation": model_config.ACTIVATIONS},
    train_config.TrainConfig: train_config.CHOICES,
    translation_config.TranslationTrainConfig: train_config.CHOICES,
}
TYPE_WORDS = {"int": "whole number", "float": "number", "bool": "true or false",
              "str": "string", "int | None": "whole number, or unset",
              "bool | str": 'true, false, "auto"'}
PRESET = ("preset", "names several model keys at once (chalklm.config.PRESETS); keys "
          "given beside it win")


class UndocumentedField(Exception):
    """A config field with no comment to take its meaning from."""


def comments_by_line(source: str) -> dict[int, str]:
    """Line number -> the text of the comment on that line (without the #)."""
    found = {}
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT:
            found[token.start[0]] = token.string.lstrip("#").strip()
    return found


def field_lines(cls) -> tuple[list[str], dict[str, int]]:
    """The class's source lines and the line of each field it declares."""
    source = textwrap.dedent(inspect.getsource(cls))
    body = ast.parse(source).body[0].body
    lines = {node.target.id: node.lineno for node in body
             if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)}
    return source.splitlines(), lines


def own_meanings(cls) -> dict[str, str]:
    """The comment of each field `cls` itself declares: beside it, else just above it."""
    source_lines, lines = field_lines(cls)
    comments = comments_by_line("\n".join(source_lines))
    meanings = {}
    for name, line in lines.items():
        if line in comments:
            meanings[name] = comments[line]
            continue
        above = []
        while line - 1 in comments and source_lines[line - 2].lstrip().startswith("#"):
            line -= 1
            above.insert(0, comments[line])
        if above:
            meanings[name] = " ".join(above)
    return meanings


def meanings(cls, keys=None) -> dict[str, str]:
    """Each field's meaning (of the fields named in `keys`, or all); a field inherited keeps
    its base class's comment unless the subclass comments it anew. Raises
    UndocumentedField for a field with none."""
    found: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if klass is not object and "__dataclass_fields__" in vars(klass):
            found.update(own_meanings(klass))
    missing = [f.name for f in fields(cls)
               if f.name not in found and (keys is None or f.name in keys)]
    if missing:
        raise UndocumentedField(f"{cls.__name__}: no comment for {', '.join(missing)}; write "
                                "one line of meaning beside each field")
    return found


def toml_value(value) -> str:
    """A value as a config file writes it."""
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str):
        return f'"{value}"'
    return repr(value)


def allowed(cls, f) -> str:
    choices = CHOICES.get(cls, {}).get(f.name)
    if choices:
        return ", ".join(toml_value(c) for c in choices)
    return TYPE_WORDS.get(str(f.type), str(f.type))


def shipped(name: str) -> dict:
    """A shipped config's [model] and [train] keys, flat."""
    data = train_config.parse_toml(train_config.config_path(name))
    return {**data.get("model", {}), **data.get("train", {})}


def table(rows, configs: list[str]) -> list[str]:
    head = ["key", "default", "allowed", *(f"`{c}`" for c in configs), "meaning"]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    values = [shipped(c) for c in configs]
    for key, default, kinds, meaning in rows:
        given = [toml_value(v[key]) if key in v else "" for v in values]
        cells = [f"`{key}`", default, kinds, *given, meaning]
        out.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return out


def rows(cls, keys) -> list[tuple[str, str, str, str]]:
    """(key, default, allowed, meaning) for each field of `cls` a config accepts."""
    said = meanings(cls, keys)
    return [(f.name, toml_value(f.default) if f.default is not MISSING else "",
             allowed(cls, f), said[f.name]) for f in fields(cls) if f.name in keys]


def preset_row() -> tuple[str, str, str, str]:
    return (PRESET[0], "unset", ", ".join(f'"{p}"' for p in model_config.PRESETS), PRESET[1])


def sections():
    gpt = ["shakespeare_char", "shakespeare_char_gpu"]
    mt = ["multi30k_de_en"]
    yield ("A GPT run: `[model]`", gpt,
           rows(model_config.GPTConfig, train_config.MODEL_KEYS) + [preset_row()])
    yield ("A GPT run: `[train]`", gpt, rows(train_config.TrainConfig, train_config.TRAIN_KEYS))
    yield ("A translation run (`task = \"translation\"`): `[model]`", mt,
           rows(model_config.TransformerConfig, translation_config.MODEL_KEYS))
    yield ("A translation run: `[train]`", mt,
           rows(translation_config.TranslationTrainConfig, translation_config.TRAIN_KEYS))


INTRO = """\
# Config reference

Written by `{fix}` from the config classes (`chalklm/config.py`,
`chalklm/training/config.py`, `chalklm/translation/config.py`); do not edit by hand.

A run's settings come from a TOML file (`--config NAME` for one shipped in
`chalklm/configs/`, or a path), then `--set key=value` (any key below, repeatable), then
the command's flags (`--max-steps`, `--time-budget`, `--seed`, ...). A key is named alone
on the command line: `--set n_layer=4`. "default" is the value a key takes when the file
does not set it; the shipped configs' columns show what they set. The vocabulary size
comes from the tokenizer. Why each shipped value was chosen: `docs/measurements.md`.
"""


def render() -> str:
    out = [INTRO.format(fix=FIX)]
    for title, configs, found in sections():
        out += [f"## {title}", "", *table(found, configs), ""]
    return "\n".join(out)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="only check that docs/config.md is up to date")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        current = OUTPUT.read_text(encoding="utf-8") if OUTPUT.is_file() else ""
        if current != text:
            print(f"{OUTPUT} is out of date; run: {FIX}", file=sys.stderr)
            return 1
        return 0
    OUTPUT.write_text(text, encoding="utf-8")
    print(f"wrote {OUTPUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
