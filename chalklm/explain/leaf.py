"""The leaf/flower network for the page: every weight, every weighted sum, one training step.

The article's first network (chalklm/demos/leaf_flower.py, chalklm/scratch/models.py
`SimpleNetwork`): R, G, B and volume in, 3 tanh neurons, 2 outputs, the larger one wins.
The server keeps no network: the page holds the weights and sends them with each
request, so two browsers each train their own. "One step" is the demo's step, without
momentum: the squared error over the training examples, backward(), and every weight
moved against its gradient by the learning rate.
"""

from __future__ import annotations

import numpy as np

from chalklm.demos import leaf_flower
from chalklm.demos.tasks import LEAF_OR_FLOWER, make_split
from chalklm.explain.locks import GLASS_LOCK
from chalklm.explain.requests import BadRequest, number
from chalklm.explain.trace import code_of
from chalklm.scratch import Tensor, manual_seed, no_grad
from chalklm.scratch.models import SimpleNetwork

TASK = LEAF_OR_FLOWER
SPLIT = make_split(TASK, seed=0)
NAMES = ("hidden.weight", "hidden.bias", "output.weight", "output.bias")
CODE = {"network": f"{code_of(SimpleNetwork)} (forward: output(tanh(hidden(x))))",
        "loss": "chalklm/demos/leaf_flower.py squared_error",
        "step": "chalklm/scratch/autograd.py Tensor.backward; weight -= lr * gradient"}


def _network(weights: dict | None) -> SimpleNetwork:
    with GLASS_LOCK:
        manual_seed(0)
        model = SimpleNetwork(inputs=len(TASK.inputs), hidden=3, outputs=len(TASK.outputs))
    if weights is not None:
        own = model.state_dict()
        for name in NAMES:
            value = weights.get(name) if isinstance(weights, dict) else None
            try:
                array = np.asarray(value, dtype=np.float32)
            except (TypeError, ValueError):
                array = None
            if array is None or array.shape != own[name].shape or not np.isfinite(array).all():
                raise BadRequest(f"weights[{name!r}] must be finite numbers of shape "
                                 f"{list(own[name].shape)}")
            own[name] = array
        model.load_state_dict(own)
    return model


def _weights(model: SimpleNetwork) -> dict:
    return {name: value.tolist() for name, value in model.state_dict().items()}


def start() -> dict:
    """The task, the network's random starting weights (seed 0) and a few examples."""
    return {"task": {"name": TASK.name, "inputs": list(TASK.inputs), "units": list(TASK.units),
                     "scales": list(TASK.scales), "outputs": list(TASK.outputs),
                     "rule": TASK.rule},
            "weights": _weights(_network(None)), "code": CODE,
            "examples": [{"inputs": x.tolist(), "label": int(y)}
                         for x, y in zip(SPLIT.test_x[:6], SPLIT.test_y[:6])]}


def read_inputs(data: dict) -> np.ndarray:
    raw = data.get("inputs")
    if not isinstance(raw, list) or len(raw) != len(TASK.inputs):
        raise BadRequest(f"'inputs' must be {len(TASK.inputs)} numbers: "
                         f"{', '.join(TASK.inputs)}")
    return np.array([number({"x": v}, "x", 0.0, 0.0, 1000.0, low_open=False,
                            wanted="from 0 to 1000") for v in raw], dtype=np.float32)


def forward(data: dict) -> dict:
    """One example through the network, every sum kept: the page draws them on the edges."""
    model = _network(data.get("weights"))
    raw = read_inputs(data)
    x = Tensor(TASK.scaled(raw)[None, :])
    with GLASS_LOCK, no_grad():
        hidden_sums = model.hidden(x)
        hidden = hidden_sums.tanh()
        outputs = model.output(hidden)
    out = outputs.data[0]
    return {"raw": raw.tolist(), "scaled": x.data[0].tolist(),
            "hidden_sums": hidden_sums.data[0].tolist(), "hidden": hidden.data[0].tolist(),
            "outputs": out.tolist(), "winner": int(np.argmax(out)),
            "answer": TASK.outputs[int(np.argmax(out))], "code": CODE}


def step(data: dict) -> dict:
    """One step of gradient descent on all training examples: gradients, then new weights."""
    model = _network(data.get("weights"))
    lr = number(data, "lr", leaf_flower.DEFAULT_LR, 0.0, 10.0, wanted="in (0, 10]")
    before = _weights(model)
    with GLASS_LOCK:
        loss = leaf_flower.squared_error(model(Tensor(TASK.scaled(SPLIT.train_x))),
                                         SPLIT.train_y)
        model.zero_grad()
        loss.backward()
        params = dict(model.named_parameters())
        grads = {name: params[name].grad.tolist() for name in NAMES}
        for p in model.parameters():
            p.data -= lr * p.grad
        with no_grad():
            after = leaf_flower.squared_error(model(Tensor(TASK.scaled(SPLIT.train_x))),
                                              SPLIT.train_y).item()
        accuracy = leaf_flower.accuracy(model, TASK, SPLIT.test_x, SPLIT.test_y)
    return {"loss": loss.item(), "loss_after": after, "lr": lr, "gradients": grads,
            "before": before, "weights": _weights(model), "accuracy": accuracy, "code": CODE}
