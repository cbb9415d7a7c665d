"""Translation with the encoder-decoder Transformer (German to English on Multi30k).

Read in this order:
  chalklm/data/parallel.py   sentence pairs, one BPE vocabulary, token-count batches
  training.py                the GPT's trainer with the paper's recipe
  decoding.py                greedy decoding and batched beam search (length penalty)
  translator.py              a checkpoint + tokenizer: sentences in, translations out
  evaluation.py              sacreBLEU's BLEU and chrF, with their signatures
  attention.py               which source token each target token looked at
The models themselves: chalklm/scratch/transformer.py (glass box, explained) and
chalklm/models/transformer.py (fast engine).
"""
