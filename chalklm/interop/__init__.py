"""Hugging Face interop: chalklm GPT checkpoints to and from GPT-2 folders.

- `gpt2`: the name and layout mapping, and which chalklm models GPT-2 can express (NumPy).
- `tokenizer`: tokenizers as HF `tokenizer.json` files.
- `hf`: `export_hf(checkpoint, out)` and `import_hf(folder, out)`, the folder reading and
  writing behind `chalklm export-hf` and `chalklm import-hf`.
"""

from chalklm.interop.hf import export_hf, import_hf

__all__ = ["export_hf", "import_hf"]
