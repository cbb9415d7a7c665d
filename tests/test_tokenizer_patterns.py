"""The ASCII spellings of the named patterns (stdlib `re`) cut exactly as `regex` does."""

import itertools
import os
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chalklm.tokenizers.patterns import ASCII_PATTERNS, PATTERNS, compile_pattern, splitter

# One character of each class either spelling tells apart: letters (the contraction
# letters among them, both cases), digits, apostrophe, \t-\r, space, \x1c (space to
# Python's str.isspace and re's \s, not to regex's), punctuation, underscore.
ALPHABET = "aSsTl9'\t\n\r\x0b\x1c !_"


def cuts_alike(name: str, text: str) -> bool:
    return re.findall(ASCII_PATTERNS[name], text) == compile_pattern(PATTERNS[name]).findall(text)


@pytest.mark.parametrize("name", PATTERNS)
def test_every_short_string_of_the_classes_is_cut_alike(name):
    for length in range(1, 5):
        for chars in itertools.product(ALPHABET, repeat=length):
            assert cuts_alike(name, "".join(chars)), repr("".join(chars))


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet=st.characters(max_codepoint=127), max_size=200),
       st.sampled_from(sorted(PATTERNS)))
def test_any_ascii_text_is_cut_alike(text, name):
    assert cuts_alike(name, text)


@pytest.mark.parametrize("name", PATTERNS)
def test_a_corpus_is_cut_alike_and_other_text_goes_to_regex(name):
    text = (Path(os.environ["CHALKLM_DATA_DIR"]) / "tinyshakespeare" / "input.txt").read_text()
    assert splitter(PATTERNS[name])(text) == compile_pattern(PATTERNS[name]).findall(text)
    mixed = "Größe 12345 don't\u00a0 \u2003x\r\n"  # non-ASCII: regex's own classes
    assert splitter(PATTERNS[name])(mixed) == compile_pattern(PATTERNS[name]).findall(mixed)
