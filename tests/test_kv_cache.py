"""The fast engine's KV cache as beam search uses it: `select` moves each row to the beam
that continues it, for the Transformer's decoder and for a GPT with left padding."""

import numpy as np
import pytest
import torch

from chalklm.config import GPTConfig, TransformerConfig
from chalklm.errors import ShapeError
from chalklm.models.gpt import GPT
from chalklm.models.kv_cache import KVCache
from chalklm.models.transformer import Transformer


def test_after_select_a_decoder_step_scores_the_chosen_prefixes_as_read_whole():
    torch.manual_seed(5)
    config = TransformerConfig(src_vocab_size=30, tgt_vocab_size=30, n_layer_enc=1,
                               n_layer_dec=2, n_head=2, n_embd=16, ffn_dim=32, dropout=0.0,
                               max_len=16, pad_id=0)
    model = Transformer(config).eval()
    src = torch.tensor([[5, 6, 7, 2], [8, 9, 2, 0]])
    sentence = torch.tensor([0, 0, 1, 1])  # the source each row reads (two beams each)
    prefix = torch.tensor([[1, 5, 9], [1, 8, 6], [1, 7, 7], [1, 9, 5]])
    parent = torch.tensor([1, 1, 3])  # beam 0 dropped, beam 1 copied, sentence 1 down to one
    token = torch.tensor([[4], [6], [8]])
    with torch.no_grad():
        memory, mask = model.encode(src)
        cross = model.cross_keys_values(memory)

        def rows(index):  # each row's cross-attention keys and values, its source's padding
            return [(k[index], v[index]) for k, v in cross], mask[index]

        cache = model.kv_cache(4, 8)
        model.decode_step(prefix, cache, *rows(sentence))
        cache.select(parent.numpy())
        step = model.decode_step(token, cache, *rows(sentence[parent]))
        chosen = sentence[parent]
        whole = model.decode(torch.cat([prefix[parent], token], 1), memory[chosen], mask[chosen])
    torch.testing.assert_close(step, whole[:, -1], atol=1e-5, rtol=1e-5)
    assert (cache.batch, cache.rows, cache.length, len(cache.layers)) == (3, 4, 4, 2)
    with pytest.raises(ShapeError, match="4 rows"):
        cache.select(np.arange(5))
    cache.reset()
    assert cache.batch == 4 and cache.length == 0


@pytest.mark.parametrize("parent", [[2, 0], [1]])
def test_select_carries_each_rows_padding_with_it(parent):
    """A left-padded GPT batch: after select, each row steps exactly as the prompt it
    continues does in a cache of its own (its padding hidden, its positions its own)."""
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=20, block_size=16, n_layer=2, n_head=2, n_embd=16)).eval()
    ids = torch.tensor([[0, 0, 3, 4], [5, 6, 7, 8], [0, 9, 10, 11]])
    pad = np.array([2, 0, 1])
    token = torch.tensor([[12], [13]])[: len(parent)]
    with torch.no_grad():
        cache = KVCache(model.config, 3)
        cache.reset(pad)
        model(ids, cache=cache)
        cache.select(parent)
        step, _ = model(token, cache=cache)
        alone = KVCache(model.config, len(parent))
        alone.reset(pad[parent])
        model(ids[parent], cache=alone)
        expected, _ = model(token, cache=alone)
    torch.testing.assert_close(step, expected, atol=1e-6, rtol=1e-6)
