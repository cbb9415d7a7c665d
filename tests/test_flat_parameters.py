"""The fast engine's flat parameters: the same training as per-parameter AdamW, and the
model sees every update."""

import copy

import numpy as np
import torch

import chalklm
from chalklm.config import GPTConfig
from chalklm.models import GPT, training_speed
from chalklm.training.config import TrainConfig
from chalklm.training.distributed import Distributed
from chalklm.training.engines import TorchEngine, decay_groups
from chalklm.training.flat_parameters import FlatParameters

CONFIG = GPTConfig(vocab_size=13, block_size=8, n_layer=2, n_head=2, n_embd=16)
TRAIN = TrainConfig(learning_rate=3e-2, weight_decay=0.1, grad_clip=0.5, dtype="fp32")


def batches(step):
    rng = np.random.default_rng(step)
    return [tuple(rng.integers(0, 13, (4, 8)) for _ in range(2)) for _ in range(2)]


def reference_step(model, optimizer, micro_batches):
    """What the engine did before FlatParameters: AdamW and clipping tensor by tensor (the
    forward as the engine's, with the trainer's speed-ups)."""
    for x, y in micro_batches:
        with training_speed.enabled():
            _, loss = model(torch.from_numpy(x), torch.from_numpy(y))
        (loss / len(micro_batches)).backward()
    norm = torch.nn.utils.clip_grad_norm_(model.parameters(), TRAIN.grad_clip)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return float(norm)


def test_flat_training_equals_per_parameter_adamw():
    engine = TorchEngine(CONFIG, TRAIN, "cpu", "fp32", Distributed())
    model = copy.deepcopy(engine.model)
    groups = decay_groups(model.named_parameters())
    for g in groups:
        g["weight_decay"] = TRAIN.weight_decay if g.pop("decay") else 0.0
    optimizer = torch.optim.AdamW(groups, lr=TRAIN.learning_rate, betas=(0.9, 0.99),
                                  fused=True)
    for step in range(5):
        _, norm = engine.train_step(batches(step), TRAIN.learning_rate)
        assert abs(norm - reference_step(model, optimizer, batches(step))) < 1e-5
    want = model.state_dict()
    for name, value in engine.model.state_dict().items():
        if name.endswith("key.bias"):
            # Its exact gradient is 0 (softmax ignores a constant added to every score of a
            # row); AdamW scales its rounding noise, ~1e-10, up to steps of ~lr. The norm is
            # summed in another order here, so that noise differs.
            continue
        torch.testing.assert_close(value, want[name], rtol=0, atol=1e-6, msg=name)


def test_parameters_become_views_with_their_values_names_and_gradients():
    torch.manual_seed(0)
    model = GPT(CONFIG)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    names = {p: n for n, p in model.named_parameters()}
    flat = FlatParameters([g["params"] for g in decay_groups(model.named_parameters())], names)
    for name, value in model.state_dict().items():
        assert torch.equal(value, before[name])
    assert sum(b.numel() for b in flat.buffers) == sum(v.numel() for v in before.values())
    ids = torch.randint(0, 13, (2, 8))
    model(ids, ids)[1].backward()
    grads = flat.split([b.grad for b in flat.buffers])
    for name, p in model.named_parameters():
        assert p.grad.abs().sum() > 0 and torch.equal(grads[name], p.grad)
    with torch.no_grad():
        flat.buffers[0].mul_(2)
    assert torch.equal(model.token_embedding.weight, 2 * before["token_embedding.weight"])
    moments = flat.join(grads)
    assert all(torch.equal(m, b.grad) for m, b in zip(moments, flat.buffers))


def test_generation_between_steps_reads_the_updated_weights():
    """decode_weights keeps copies keyed by the parameters' versions; writes through the
    flat buffer must reach them (FlatParameters.updated)."""
    engine = TorchEngine(CONFIG, TRAIN, "cpu", "fp32", Distributed())
    prompt = [[1, 2, 3]]
    for step in range(3):
        engine.model.eval()
        got = chalklm.generate(engine.model, prompt, 6, temperature=0)
        fresh = GPT(CONFIG).eval()
        fresh.load_state_dict(engine.model.state_dict())
        assert got == chalklm.generate(fresh, prompt, 6, temperature=0)
        engine.train_step(batches(step), TRAIN.learning_rate)
