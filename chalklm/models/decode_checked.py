"""Which Python the C step (`_decode.c`) repeats, and whether that Python has changed.

`_decode.c` computes what `models/gpt.py` and the layers it is built of (`nn.py`,
`positional.py`, `rope.py`, `attention.py`, `block.py`) compute for one new token. A
learner who edits those files (a different norm, another activation) must see
the edit in `chalklm sample`, so the C step answers only while their code is the code it
was checked against: CHECKED holds a fingerprint of each file, its code with comments
and docstrings left out (so a reworded comment changes nothing), and `changed()` names
the files whose code differs now. The tests that check the C step against a full forward
(tests/test_fused_step.py) also check CHECKED; after changing the arithmetic, change
`_decode.c` to match and write the new fingerprints: `python -m chalklm.models.decode_checked`.
"""

from __future__ import annotations

import ast
import functools
import hashlib
from pathlib import Path

HERE = Path(__file__).resolve().parent
FILES = ("gpt.py", "nn.py", "positional.py", "rope.py", "attention.py", "block.py")

# The fingerprints of FILES that `_decode.c` was last checked against (written by `main`).
CHECKED = {
    "gpt.py": "0153045498395bca",
    "nn.py": "6df7e7a8b2ece6aa",
    "positional.py": "00da8b7691722a22",
    "rope.py": "e2f5951cdb92ebba",
    "attention.py": "585d592dbbf80d34",
    "block.py": "440cdd9c77e4b90a",
}


def fingerprint(source: str) -> str:
    """sha256 of the code in `source` as Python reads it: no comments, no docstrings, one
    layout (ast.unparse)."""
    tree = ast.parse(source)
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr) and \
                isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str):
            node.body = body[1:] or [ast.Pass()]
    return hashlib.sha256(ast.unparse(tree).encode()).hexdigest()[:16]


@functools.lru_cache(maxsize=1)
def current() -> dict[str, str]:
    """The fingerprints of FILES as they are now (read once per process)."""
    return {name: fingerprint((HERE / name).read_text(encoding="utf-8")) for name in FILES}


def changed() -> list[str]:
    """The files among FILES whose code is not what `_decode.c` was checked against."""
    try:
        now = current()
    except (OSError, SyntaxError):  # no source to read: nothing shows it is unchanged
        return list(FILES)
    return [name for name in FILES if now[name] != CHECKED[name]]


def main() -> None:
    """Write the current fingerprints into CHECKED (after `_decode.c` matches them)."""
    path = Path(__file__).resolve()
    text = path.read_text(encoding="utf-8")
    start = text.index("CHECKED = {")
    end = text.index("\n}\n", start) + 3
    rows = "".join(f'    "{name}": "{value}",\n' for name, value in current().items())
    path.write_text(text[:start] + "CHECKED = {\n" + rows + "}\n" + text[end:], encoding="utf-8")
    print(f"{path}: {current()}")


if __name__ == "__main__":
    main()
