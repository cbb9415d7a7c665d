"""The demos' default settings, in a module light enough for `chalklm --help` to import."""

# leaf-flower: full-batch gradient descent with momentum
LEAF_FLOWER_STEPS = 500
LEAF_FLOWER_LR = 0.5

# chars: AdamW on random batches of windows; then a sample of this many characters
CHARS_STEPS = 10000
CHARS_LENGTH = 400
