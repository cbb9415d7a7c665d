"""Parallel text for translation: a sentence and its translation on the same line of two files.

    train.de   Ein Mann fährt Fahrrad.        train.en   A man rides a bike.

Line i of the source file and line i of the target file are one pair, so the two files
must have the same number of lines. Each pair becomes three rows of token ids:

    src     = the source tokens + </s>                 what the encoder reads
    tgt_in  = <s> + the target tokens                  what the decoder has written so far
    tgt_out = the target tokens + </s>                 what it should write at each position

A batch holds as many pairs as fit in a budget of tokens (padding included), not a
fixed number of pairs: pairs of similar length go together (length bucketing), so
little of the batch is padding. Short rows are filled with the <pad> token on the right.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from chalklm.data.registry import dataset_file, read_text_file
from chalklm.errors import DataError, TokenizerError

PAD, BOS, EOS = "<pad>", "<s>", "</s>"
SPECIAL_TOKENS = (PAD, BOS, EOS)
MULTI30K_SPLITS = ("train", "val", "test_2016_flickr")
MULTI30K_LANGUAGES = ("de", "en")

Pair = tuple[str, str]


def read_lines(path) -> list[str]:
    """The lines of a UTF-8 text file, without their line ends."""
    return read_text_file(path).splitlines()


def read_parallel(src_path, tgt_path) -> list[Pair]:
    """(source, target) pairs from two aligned files; different line counts are an error."""
    src, tgt = read_lines(src_path), read_lines(tgt_path)
    if len(src) != len(tgt):
        raise DataError(
            f"the files are not aligned: {src_path} has {len(src)} lines but {tgt_path} has "
            f"{len(tgt)}; line i of one must be the translation of line i of the other")
    return list(zip(src, tgt))


def multi30k_files(split: str, src_lang: str = "de", tgt_lang: str = "en") -> tuple[Path, Path]:
    """The local (source, target) files of a Multi30k split (see chalklm.data.registry)."""
    if split not in MULTI30K_SPLITS:
        raise DataError(f"multi30k has no split {split!r}; it has {', '.join(MULTI30K_SPLITS)}")
    for lang in (src_lang, tgt_lang):
        if lang not in MULTI30K_LANGUAGES:
            raise DataError(f"multi30k (task 1) has no language {lang!r}; it has "
                            f"{', '.join(MULTI30K_LANGUAGES)}")
    return (dataset_file("multi30k", f"{split}.{src_lang}"),
            dataset_file("multi30k", f"{split}.{tgt_lang}"))


def load_multi30k(split: str, src_lang: str = "de", tgt_lang: str = "en") -> list[Pair]:
    return read_parallel(*multi30k_files(split, src_lang, tgt_lang))


@dataclass(frozen=True)
class SpecialIds:
    """The ids of <pad>, <s> (begin) and </s> (end) in a tokenizer."""

    pad: int
    bos: int
    eos: int

    @classmethod
    def of(cls, tokenizer) -> SpecialIds:
        ids = getattr(getattr(tokenizer, "special", None), "ids", {})
        missing = [t for t in SPECIAL_TOKENS if t not in ids]
        if missing:
            raise TokenizerError(
                f"the tokenizer lacks the special token(s) {', '.join(missing)} that "
                "translation needs; train it with chalklm.data.parallel.train_tokenizer")
        return cls(ids[PAD], ids[BOS], ids[EOS])


def train_tokenizer(pairs: list[Pair], vocab_size: int = 8000, progress: bool = True):
    """One byte-level BPE vocabulary learned from both languages, plus <pad>, <s>, </s>.

    One vocabulary for both sides lets the source embedding, the target embedding and
    the output layer be one matrix (the paper's tied embeddings); names and numbers,
    spelled alike in both languages, then share their tokens."""
    from chalklm.tokenizers import BPETokenizer

    texts = ["\n".join(s for s, _ in pairs), "\n".join(t for _, t in pairs)]
    return BPETokenizer.train(texts, vocab_size, special_tokens=SPECIAL_TOKENS,
                              progress=progress)


def encode_sentence(tokenizer, text: str) -> list[int]:
    """A sentence's ids; the text of a special token inside it is read as plain text."""
    return tokenizer.encode(text.strip(), allowed_special="none")


@dataclass
class EncodedPairs:
    """Token rows of the pairs that passed the length filter: src and tgt (= <s> ... </s>)."""

    src: list[np.ndarray]
    tgt: list[np.ndarray]
    dropped: int  # pairs longer than max_len (or empty), left out

    def __len__(self) -> int:
        return len(self.src)


def encode_pairs(tokenizer, pairs: list[Pair], max_len: int = 256,
                 progress: bool = False) -> EncodedPairs:
    """Encode pairs, keeping those whose source and target fit in max_len tokens
    (end and begin tokens included) and neither side is empty."""
    from tqdm import tqdm

    ids = SpecialIds.of(tokenizer)
    src_rows, tgt_rows, dropped = [], [], 0
    for src, tgt in tqdm(pairs, desc="encoding pairs", unit="pair", disable=not progress,
                         leave=False):
        s, t = encode_sentence(tokenizer, src), encode_sentence(tokenizer, tgt)
        if not s or not t or len(s) + 1 > max_len or len(t) + 1 > max_len:
            dropped += 1
            continue
        src_rows.append(np.asarray(s + [ids.eos], dtype=np.int64))
        tgt_rows.append(np.asarray([ids.bos] + t + [ids.eos], dtype=np.int64))
    if not src_rows:
        raise DataError(f"no pair is left after the length filter (max_len {max_len}, "
                        f"{dropped} dropped); raise max_len or check the files")
    return EncodedPairs(src_rows, tgt_rows, dropped)


def pad_rows(rows: list[np.ndarray], pad_id: int) -> np.ndarray:
    """Rows of different lengths as one (len(rows), longest) array, filled with pad_id."""
    out = np.full((len(rows), max(len(r) for r in rows)), pad_id, dtype=np.int64)
    for i, row in enumerate(rows):
        out[i, : len(row)] = row
    return out


def make_batch(src_rows, tgt_rows, pad_id: int):
    """((src, tgt_in), tgt_out): the inputs, then the targets, as the trainer hands them on."""
    tgt = pad_rows(tgt_rows, pad_id)
    return (pad_rows(src_rows, pad_id), tgt[:, :-1]), tgt[:, 1:]


class PairBatches:
    """Token-budget batches with length bucketing, reproducible from (seed, index).

    Each epoch sorts the pairs by length (ties broken at random), cuts the sorted list
    into batches of at most `max_tokens` tokens counting padding (rows x longest row),
    and shuffles the order of the batches. Batch `index` of a run is found by counting
    epochs, so a resumed run draws exactly the batches an uninterrupted one would.
    """

    def __init__(self, pairs: EncodedPairs, pad_id: int):
        self.pairs, self.pad_id = pairs, pad_id
        self.src_len = np.array([len(r) for r in pairs.src])
        self.tgt_len = np.array([len(r) - 1 for r in pairs.tgt])  # tgt_in / tgt_out length
        self._layout: tuple = (None, [])  # the last epoch's batches, by its key
        self._sizes: dict[tuple, int] = {}  # batches per epoch, remembered for every epoch

    def __len__(self) -> int:
        """Target tokens (what the loss is averaged over)."""
        return int(self.tgt_len.sum())

    def cut(self, order: np.ndarray, max_tokens: int) -> list[np.ndarray]:
        """Consecutive runs of `order` whose padded size (rows x longest) fits max_tokens."""
        longest = np.maximum(self.src_len, self.tgt_len)
        if longest.max() > max_tokens:
            raise DataError(f"a pair of {longest.max()} tokens does not fit in a batch of "
                            f"{max_tokens} tokens; raise batch_size or lower max_len")
        batches, start, width = [], 0, 0
        for i, example in enumerate(order):
            width = max(width, longest[example])
            if width * (i - start + 1) > max_tokens:
                batches.append(order[start:i])
                start, width = i, longest[example]
        batches.append(order[start:])
        return batches

    def epoch(self, max_tokens: int, seed: int, epoch: int) -> list[np.ndarray]:
        """The batches (arrays of pair numbers) of one epoch, in the order they are drawn."""
        key = (max_tokens, seed, epoch)
        if self._layout[0] != key:
            rng = np.random.default_rng([seed, epoch])
            order = np.lexsort((rng.random(len(self.src_len)), self.tgt_len, self.src_len))
            batches = self.cut(order, max_tokens)
            self._layout = (key, [batches[i] for i in rng.permutation(len(batches))])
            self._sizes[key] = len(batches)
        return self._layout[1]

    def batch(self, max_tokens: int, seed: int, index: int):
        """Batch number `index` of the run seeded `seed`: ((src, tgt_in), tgt_out)."""
        epoch = 0
        while True:
            key = (max_tokens, seed, epoch)
            size = self._sizes.get(key) or len(self.epoch(max_tokens, seed, epoch))
            if index < size:
                return self._make(self.epoch(max_tokens, seed, epoch)[index])
            index -= size
            epoch += 1

    def sequential(self, max_tokens: int) -> Iterator:
        """Every pair once, sorted by length, in token-budget batches (for validation)."""
        order = np.lexsort((self.tgt_len, self.src_len))
        for rows in self.cut(order, max_tokens):
            yield self._make(rows)

    def _make(self, rows):
        return make_batch([self.pairs.src[i] for i in rows], [self.pairs.tgt[i] for i in rows],
                          self.pad_id)
