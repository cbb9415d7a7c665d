"""docs/config.md is what docs/config_reference.py writes from the config classes now, so the
reference never drifts from the code; and the generator refuses a field it cannot explain."""

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import pytest

from chalklm.training.config import MODEL_KEYS, TRAIN_KEYS
from chalklm.translation import config as translation_config

ROOT = Path(__file__).resolve().parents[1]


def load_generator():
    spec = importlib.util.spec_from_file_location("config_reference",
                                                  ROOT / "docs" / "config_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def generator():
    return load_generator()


def test_docs_config_md_is_up_to_date(generator):
    written = (ROOT / "docs" / "config.md").read_text(encoding="utf-8")
    assert written == generator.render(), \
        "docs/config.md is out of date; run: python docs/config_reference.py"


def test_every_key_a_config_accepts_is_listed_with_a_meaning(generator):
    sections = list(generator.sections())
    for title, _, rows in sections:
        for key, _, allowed, meaning in rows:
            assert meaning and allowed, (title, key)
    keys = [{row[0] for row in rows} for _, _, rows in sections]
    assert keys == [set(MODEL_KEYS), set(TRAIN_KEYS), set(translation_config.MODEL_KEYS),
                    set(translation_config.TRAIN_KEYS)]


@dataclass
class Example:
    width: int = 4  # how many numbers a vector holds
    # the lines just above a field
    # count when its own line has no comment
    depth: int = 2
    plain: str = "x"


def test_the_meaning_is_the_comment_beside_the_field_or_above_it(generator):
    with pytest.raises(generator.UndocumentedField, match="plain"):
        generator.meanings(Example)
    found = generator.meanings(Example, keys=("width", "depth"))
    assert found["width"] == "how many numbers a vector holds"
    assert found["depth"] == ("the lines just above a field count when its own line has "
                              "no comment")


def test_a_subclass_keeps_its_base_class_comment(generator):
    found = generator.meanings(translation_config.TranslationTrainConfig)
    assert found["beta1"] == generator.meanings(translation_config.TrainConfig)["beta1"]
    assert "tokens" in found["batch_size"]  # commented anew: translation counts tokens
