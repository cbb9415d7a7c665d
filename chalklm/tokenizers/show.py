"""Seeing sub-word tokens: the text cut into its tokens, each above its id.

    |First|·Citizen|:↵|Before|·we|
    |7049 |1522    |386|9843 |283|

Spaces show as ·, newlines as ↵, tabs as →; a token that is only part of a character's
UTF-8 bytes shows those bytes in hex, as <e2 80>.
"""

from __future__ import annotations

VISIBLE = str.maketrans({" ": "·", "\n": "↵", "\t": "→", "\r": "␍"})


def token_text(tokenizer, token_id: int) -> str:
    """One token as visible text."""
    if not hasattr(tokenizer, "id_to_bytes"):  # the character tokenizer
        return tokenizer.decode([token_id]).translate(VISIBLE)
    data = tokenizer.id_to_bytes(token_id)
    try:
        return data.decode("utf-8").translate(VISIBLE)
    except UnicodeDecodeError:
        return "<" + " ".join(f"{b:02x}" for b in data) + ">"


def render_tokens(tokenizer, ids: list[int], width: int = 80) -> str:
    """Two aligned rows per line (tokens, then ids), cells delimited by |, wrapped at width."""
    cells = []
    for token_id in ids:
        text, number = token_text(tokenizer, token_id), str(token_id)
        size = max(len(text), len(number))
        cells.append((text.ljust(size), number.ljust(size)))
    lines, row = [], []
    used = 1
    for cell in cells + [None]:
        if cell is None or (row and used + len(cell[0]) + 1 > width):
            if row:
                lines.append("|" + "|".join(c[0] for c in row) + "|")
                lines.append("|" + "|".join(c[1] for c in row) + "|")
            row, used = [], 1
        if cell is not None:
            row.append(cell)
            used += len(cell[0]) + 1
    return "\n".join(lines)
