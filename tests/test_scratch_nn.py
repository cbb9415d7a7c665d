"""Glass-box layers: names, state_dict round trip and errors, train/eval, and the
forward/backward of Linear, Embedding and LayerNorm against PyTorch."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import chalklm.scratch as cs
from chalklm.errors import ShapeError
from chalklm.scratch import Tensor, nn


class Tiny(nn.Module):
    def __init__(self):
        self.embed = nn.Embedding(10, 4)
        self.blocks = nn.ModuleList([nn.Linear(4, 4), nn.Linear(4, 4, bias=False)])
        self.norm = nn.LayerNorm(4)
        self.drop = nn.Dropout(0.5)
        self.head = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3))

    def forward(self, ids):
        x = self.embed(ids)
        for block in self.blocks:
            x = block(x).relu()
        return self.head(self.drop(self.norm(x)))


def test_named_parameters_use_dotted_attribute_paths():
    names = [name for name, _ in Tiny().named_parameters()]
    assert names == [
        "embed.weight", "blocks.0.weight", "blocks.0.bias", "blocks.1.weight",
        "norm.scale", "norm.bias", "head.0.weight", "head.0.bias", "head.2.weight",
        "head.2.bias",
    ]


def test_shared_parameter_is_listed_once():
    model = Tiny()
    model.blocks[1].weight = model.blocks[0].weight
    names = [n for n, _ in model.named_parameters()]
    assert "blocks.1.weight" not in names and len(model.parameters()) == len(names)


def test_repr_shows_the_tree_and_weight_shapes():
    text = repr(Tiny())
    assert text.startswith("Tiny(\n")
    assert "  blocks: ModuleList(\n    0: Linear(\n      weight: (4, 4)" in text
    assert "drop: Dropout()" in text


def test_linear_shapes_follow_the_article():
    layer = nn.Linear(3, 5)
    assert layer.weight.shape == (3, 5) and layer.bias.shape == (5,)
    assert nn.Linear(3, 5, bias=False).bias is None


def test_state_dict_round_trip_gives_identical_outputs():
    cs.manual_seed(0)
    a, b = Tiny().eval(), Tiny().eval()
    ids = np.array([[1, 2, 3], [4, 5, 9]])
    assert not np.allclose(a(ids).data, b(ids).data)
    state = a.state_dict()
    assert all(isinstance(v, np.ndarray) for v in state.values())
    b.load_state_dict(state)
    np.testing.assert_array_equal(a(ids).data, b(ids).data)
    state["norm.scale"][:] = 7  # a copy: changing it leaves the model alone
    assert not np.any(a.norm.scale.data == 7)


def test_load_state_dict_names_missing_unexpected_and_misshaped():
    model = Tiny()
    state = model.state_dict()
    del state["norm.bias"]
    state["extra.weight"] = np.zeros(2)
    state["head.2.weight"] = np.zeros((8, 4))
    with pytest.raises(ShapeError) as err:
        model.load_state_dict(state)
    message = str(err.value)
    assert "missing norm.bias" in message and "unexpected extra.weight" in message
    assert "head.2.weight has shape (8, 4), the model expects (8, 3)" in message
    assert "\n" not in message


def test_train_eval_switches_dropout_everywhere():
    cs.manual_seed(1)
    model = Tiny()
    ids = np.arange(10).reshape(2, 5)
    model.eval()
    assert not model.drop.training
    np.testing.assert_array_equal(model(ids).data, model(ids).data)
    model.train()
    assert model.drop.training and model.head.training
    assert not np.array_equal(model(ids).data, model(ids).data)


def test_zero_grad_clears_every_parameter():
    model = Tiny()
    cs.cross_entropy(model(np.array([[1, 2]])), np.array([[0, 1]])).backward()
    assert all(p.grad is not None for p in model.parameters())
    model.zero_grad()
    assert all(p.grad is None for p in model.parameters())


def test_embedding_rejects_ids_outside_the_table():
    with pytest.raises(ShapeError, match="token id 10 is outside"):
        nn.Embedding(10, 4)(np.array([1, 10]))
    with pytest.raises(ShapeError, match="integer ids"):
        nn.Embedding(10, 4)(np.array([1.0]))


def test_layers_match_torch_forward_and_backward():
    cs.manual_seed(2)
    lin, emb, norm = nn.Linear(6, 5), nn.Embedding(7, 6), nn.LayerNorm(5)
    norm.scale.data[:] = np.random.default_rng(0).standard_normal(5)
    norm.bias.data[:] = np.random.default_rng(1).standard_normal(5)
    ids = np.array([[0, 3, 3, 6], [2, 2, 1, 0]])
    out = norm(lin(emb(ids)))
    out.backward(np.ones(out.shape, np.float32) * np.arange(5, dtype=np.float32))

    t = {name: torch.tensor(p.data, requires_grad=True) for name, p in
         [("emb", emb.weight), ("w", lin.weight), ("b", lin.bias),
          ("scale", norm.scale), ("bias", norm.bias)]}
    x = t["emb"][torch.from_numpy(ids)] @ t["w"] + t["b"]
    t_out = F.layer_norm(x, (5,), t["scale"], t["bias"], eps=1e-5)
    (t_out * torch.arange(5.0)).sum().backward()
    np.testing.assert_allclose(out.data, t_out.detach().numpy(), rtol=1e-5, atol=1e-5)
    for name, p in [("emb", emb.weight), ("w", lin.weight), ("b", lin.bias),
                    ("scale", norm.scale), ("bias", norm.bias)]:
        np.testing.assert_allclose(p.grad, t[name].grad.numpy(), rtol=1e-4, atol=1e-5)


def test_layernorm_without_bias_has_no_bias_parameter():
    norm = nn.LayerNorm(4, bias=False)
    assert [n for n, _ in norm.named_parameters()] == ["scale"]
    y = norm(Tensor(np.arange(8.0).reshape(2, 4)))
    np.testing.assert_allclose(y.data.mean(axis=-1), 0, atol=1e-6)
    np.testing.assert_allclose(y.data.var(axis=-1), 1, atol=1e-4)


def test_the_glass_box_never_imports_torch():
    import subprocess
    import sys

    code = ("import sys, chalklm.scratch, chalklm.scratch.nn, chalklm.scratch.optim, "
            "chalklm.scratch.attention, chalklm.scratch.models; "
            "sys.exit('torch' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
