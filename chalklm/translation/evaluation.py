"""Scoring translations against reference translations with sacreBLEU.

BLEU counts how many of the translation's 1- to 4-word sequences also appear in the
reference (with a penalty for translations shorter than the reference); chrF does the
same with character sequences. sacreBLEU computes both the standard way, on detokenized
text with its own 13a tokenization, and prints a signature that says exactly how, so
scores can be compared across papers.
"""

from __future__ import annotations

from dataclasses import dataclass

from chalklm.errors import DataError


@dataclass
class Scores:
    bleu: float
    chrf: float
    bleu_signature: str
    chrf_signature: str
    bleu_detail: str  # sacreBLEU's line: n-gram precisions, brevity penalty, lengths
    sentences: int

    def report(self) -> str:
        return (f"BLEU {self.bleu:.2f}  ({self.bleu_detail})\n"
                f"  signature: {self.bleu_signature}\n"
                f"chrF {self.chrf:.2f}\n"
                f"  signature: {self.chrf_signature}\n"
                f"{self.sentences} sentences")


def score(hypotheses: list[str], references: list[str]) -> Scores:
    """Corpus BLEU (13a tokenization, mixed case) and chrF of detokenized translations."""
    from sacrebleu.metrics import BLEU, CHRF

    if len(hypotheses) != len(references):
        raise DataError(f"{len(hypotheses)} translations but {len(references)} references; "
                        "they must be aligned line by line")
    if not references:
        raise DataError("nothing to score: no reference sentences")
    bleu, chrf = BLEU(), CHRF()
    b = bleu.corpus_score(hypotheses, [references])
    c = chrf.corpus_score(hypotheses, [references])
    detail = b.format(width=2).split(" = ", 1)[1].split(" ", 1)[1]
    return Scores(b.score, c.score, str(bleu.get_signature()), str(chrf.get_signature()),
                  detail, len(references))
