"""The C merge loop (`_merge.c`) does exactly what bpe_merge.merge_short does."""

import random
import sys

import pytest
from c_build import c_compiler, needs
from hypothesis import given, settings
from hypothesis import strategies as st

from chalklm.tokenizers import BPETokenizer
from chalklm.tokenizers.bpe_merge import merge_short, native_merger
from chalklm.tokenizers.bpe_train import PAIR_BASE

# These tests are of the C loop itself: CHALKLM_PURE_PYTHON=1, if set, does not apply here.
# Those that call it are skipped where it was not built (no C compiler); the others check
# that encoding without it gives the same ids.
try:
    from chalklm.tokenizers import _merge
except ImportError:
    _merge = None
needs_c = needs(_merge, "chalklm.tokenizers._merge")


@pytest.fixture(autouse=True)
def c_loop_allowed(monkeypatch):
    monkeypatch.delenv("CHALKLM_PURE_PYTHON", raising=False)


@pytest.fixture(scope="module")
def tok(shakespeare) -> BPETokenizer:
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("CHALKLM_PURE_PYTHON", raising=False)
        return BPETokenizer.train(shakespeare[:200_000], 1024, progress=False)


def python_merge(tok: BPETokenizer, data: bytes) -> list[int]:
    ranks = merge_short([tok._byte_ranks[b] for b in data], tok._pair_table)
    return [r + tok.id_offset for r in ranks]


def test_the_extension_is_built_where_a_compiler_is(tok):
    """An install with a C compiler builds it; encoding text never seen needs it for speed."""
    assert tok._native is not None or c_compiler() is None, \
        f"chalklm.tokenizers._merge was not built, though {c_compiler()} is here"
    assert tok._native is None or tok._native.max_bytes == 512


def test_where_it_is_not_built_python_merges(tok, shakespeare, monkeypatch):
    monkeypatch.setitem(sys.modules, "chalklm.tokenizers._merge", None)  # import fails
    absent = BPETokenizer.from_dict(tok.to_dict())
    assert absent._native is None
    text = shakespeare[300_000:330_000]
    assert absent.encode_ordinary(text) == tok.encode_ordinary(text)


@needs_c
@settings(max_examples=300, deadline=None)
@given(st.text(max_size=120) | st.text(alphabet="ab etha\n", max_size=512))
def test_native_merge_equals_python_merge(tok, text):
    data = text.encode("utf-8")[:512]
    assert tok._native.merge(data) == python_merge(tok, data)


@needs_c
def test_native_merge_with_reordered_bytes_and_an_id_offset(tok):
    """GPT-2's files number the bytes in another order, RoBERTa-style ones shift every id:
    the C loop takes both from the tokenizer, as the Python loop does."""
    order = list(range(256))
    random.Random(0).shuffle(order)
    merges = [(a + 3, b + 3) for a, b in tok.merges]
    shifted = BPETokenizer(merges, pattern=tok.pattern, byte_order=order, id_offset=3)
    assert shifted._native is not None
    for word in ("the", " thou", " Coriolanus", "ÄÖÜß größer", "\r\n\t  x", "a" * 512):
        data = word.encode("utf-8")
        assert shifted._native.merge(data) == python_merge(shifted, data)
        assert min(shifted._native.merge(data)) >= 3


def test_whole_texts_encode_the_same_with_and_without_c(tok, shakespeare, monkeypatch):
    monkeypatch.setenv("CHALKLM_PURE_PYTHON", "1")
    pure = BPETokenizer.from_dict(tok.to_dict())
    assert pure._native is None
    text = shakespeare[200_000:300_000]
    assert pure.encode_ordinary(text) == tok.encode_ordinary(text)


@needs_c
def test_bad_input_is_refused_not_crashed(tok):
    with pytest.raises(ValueError, match="at most 512 bytes"):
        tok._native.merge(b"x" * 513)
    with pytest.raises(TypeError):
        tok._native.merge("text, not bytes")
    with pytest.raises(ValueError, match="256 ranks"):
        native_merger({}, [0] * 255, 0)
    with pytest.raises(ValueError, match="out of range"):
        native_merger({1: PAIR_BASE}, list(range(256)), 0)
    assert native_merger({}, list(range(256)), 0).merge(b"") == []
