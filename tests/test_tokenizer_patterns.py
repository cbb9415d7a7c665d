"""The Latin-1 spellings of the named patterns (stdlib `re`) cut exactly as `regex` does."""

import itertools
import os
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chalklm.tokenizers.patterns import (
    LATIN1_PATTERNS,
    PATTERNS,
    compile_pattern,
    next_cut,
    previous_cut,
    splitter,
)

# One character of each class either spelling tells apart: letters (the contraction
# letters among them, both cases; accented, \xaa, \xb5, \xdf), digits and other numbers
# (\xb2, \xbd), apostrophe, \t-\r, spaces (\x85, \xa0), \x1c (space to Python's
# str.isspace and re's \s, not to regex's), punctuation (\xd7 among them), underscore.
ALPHABET = "aSsTl\xe4\xdf\xaa\xb59\xb2\xbd'\t\n\r\x0b\x1c \x85\xa0!\xd7_"


def cuts_alike(name: str, text: str) -> bool:
    return re.findall(LATIN1_PATTERNS[name], text) == compile_pattern(PATTERNS[name]).findall(text)


@pytest.mark.parametrize("name", PATTERNS)
def test_every_short_string_of_the_classes_is_cut_alike(name):
    for length in range(1, 4):
        for chars in itertools.product(ALPHABET, repeat=length):
            assert cuts_alike(name, "".join(chars)), repr("".join(chars))


@pytest.mark.parametrize("name", PATTERNS)
def test_every_pair_of_latin1_characters_is_cut_alike(name):
    for a, b in itertools.product(map(chr, range(256)), repeat=2):
        assert cuts_alike(name, a + b), repr(a + b)


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet=st.characters(max_codepoint=255), max_size=200),
       st.sampled_from(sorted(PATTERNS)))
def test_any_latin1_text_is_cut_alike(text, name):
    assert cuts_alike(name, text)


@pytest.mark.parametrize("name", PATTERNS)
def test_a_corpus_is_cut_alike_and_other_text_goes_to_regex(name):
    data = Path(os.environ["CHALKLM_DATA_DIR"])
    for text in ((data / "tinyshakespeare" / "input.txt").read_text(encoding="utf-8"),
                 (data / "multi30k" / "val.de").read_text(encoding="utf-8")):  # Latin-1
        assert splitter(PATTERNS[name])(text) == compile_pattern(PATTERNS[name]).findall(text)
    mixed = "Größe 12345 don't\u00a0 \u2003x\r\n"  # above U+00FF: regex's own classes
    assert splitter(PATTERNS[name])(mixed) == compile_pattern(PATTERNS[name]).findall(mixed)


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet="ab1 .\n\r\t\u00e4\u201e\u201c\u4e00\u00a0", max_size=120),
       st.sampled_from(sorted(PATTERNS)))
def test_text_with_characters_above_latin1_is_cut_alike(text, name):
    # lines with a wide character go to regex, the others to re: the seams must not show
    assert splitter(PATTERNS[name])(text) == compile_pattern(PATTERNS[name]).findall(text)


def test_cuts_fall_after_lone_newlines_only():
    text = "ab\n\ncd\n ef\ngh\n"
    assert next_cut(text, 0) == 11  # "ef\ngh": the first newline between two non-spaces
    assert previous_cut(text, len(text)) == 11
    assert previous_cut(text, 10) == 0 and next_cut(text, 12) == len(text)
