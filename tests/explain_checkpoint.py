"""A tiny trained GPT checkpoint for the explain tests: a few AdamW steps, then saved with
chalklm's own checkpoint writer, with a metrics.jsonl of those steps beside it."""

from __future__ import annotations

import json
from pathlib import Path

TEXT = "ROMEO: hello, my love.\nJULIET: good night, sweet prince.\n" * 4


def make_tiny_checkpoint(folder: Path, steps: int = 40) -> Path:
    import torch

    from chalklm.checkpoint import save_checkpoint
    from chalklm.config import GPTConfig
    from chalklm.models import GPT
    from chalklm.tokenizers.char import CharTokenizer

    torch.manual_seed(0)
    tokenizer = CharTokenizer(TEXT)
    config = GPTConfig(vocab_size=tokenizer.vocab_size, block_size=24, n_layer=2, n_head=2,
                       n_embd=16)
    model = GPT(config)
    data = torch.tensor(tokenizer.encode(TEXT))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    records = []
    for step in range(1, steps + 1):
        starts = torch.randint(0, len(data) - 25, (8,))
        x = torch.stack([data[s:s + 24] for s in starts])
        y = torch.stack([data[s + 1:s + 25] for s in starts])
        _, loss = model(x, y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        records.append({"step": step, "train_loss": loss.item(), "lr": 1e-2}
                       | ({"val_loss": loss.item() + 0.1} if step % 10 == 0 else {}))
    save_checkpoint(folder, model.state_dict(), config, tokenizer)
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return folder
