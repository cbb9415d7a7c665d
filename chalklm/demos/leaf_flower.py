"""The article's first network: is it a leaf or a flower? Every number printed.

A `SimpleNetwork` (4 inputs -> 3 hidden neurons -> 2 outputs) reads a colour (R, G, B)
and a volume. Output neuron 0 means "leaf", neuron 1 "flower": the larger one is the
answer. It starts from random weights and learns by gradient descent on a synthetic
dataset (tasks.py). Then the very same shape learns a different task, rain tomorrow,
from other data, with its outputs read as "dry" and "rain".
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from chalklm.demos import defaults
from chalklm.demos.show import check_seed, report_steps, signed, table
from chalklm.demos.tasks import LEAF_OR_FLOWER, RAIN_TOMORROW, Split, Task, make_split
from chalklm.errors import ConfigError
from chalklm.scratch import Tensor, manual_seed, no_grad
from chalklm.scratch.models import SimpleNetwork
from chalklm.scratch.optim import SGD

DEFAULT_STEPS = defaults.LEAF_FLOWER_STEPS
DEFAULT_LR = defaults.LEAF_FLOWER_LR
MOMENTUM = 0.9


@dataclass
class Trained:
    """A trained network and what it scored: the loss at each step, accuracy before and after."""

    task: Task
    split: Split
    model: SimpleNetwork
    losses: list[float]
    accuracy_before: float
    accuracy: float  # on the held-out examples


def squared_error(outputs: Tensor, labels: np.ndarray) -> Tensor:
    """How wrong the outputs are: the mean squared distance from the wanted outputs.

    The wanted output is 1 for the right answer's neuron and 0 for the other one.
    """
    wanted = np.eye(outputs.shape[1], dtype=outputs.dtype)[labels]
    miss = outputs - wanted
    return (miss * miss).mean()


def network_inputs(task: Task, raw: np.ndarray) -> Tensor:
    return Tensor(task.scaled(raw))


def accuracy(model: SimpleNetwork, task: Task, raw: np.ndarray, labels: np.ndarray) -> float:
    """The fraction of examples whose larger output neuron is the right answer."""
    with no_grad():
        outputs = model(network_inputs(task, raw)).data
    return float((outputs.argmax(axis=1) == labels).mean())


def train(task: Task, steps: int = DEFAULT_STEPS, lr: float = DEFAULT_LR, seed: int = 0,
          verbose: bool = True, split: Split | None = None) -> Trained:
    """Random weights, then `steps` of gradient descent on all training examples at once.

    Each step: run the network, measure the squared error, let backward() find every
    weight's gradient, and move each weight a little against it. The SGD keeps momentum
    (a running average of recent steps), which crosses the flat stretches faster.
    `split` defaults to the task's examples drawn from `seed`.
    """
    if steps <= 0:
        raise ConfigError(f"steps must be above 0, got {steps}")
    if not lr > 0:
        raise ConfigError(f"the learning rate must be above 0, got {lr}")
    split = split or make_split(task, seed=check_seed(seed))
    manual_seed(seed)
    model = SimpleNetwork(inputs=len(task.inputs), hidden=3, outputs=len(task.outputs))
    before = accuracy(model, task, split.test_x, split.test_y)
    optimizer = SGD(model.parameters(), lr=lr, momentum=MOMENTUM)
    x = network_inputs(task, split.train_x)
    losses, shown = [], report_steps(steps)
    for step in tqdm(range(steps), desc=f"training ({task.name})", unit="step",
                     disable=not verbose):
        loss = squared_error(model(x), split.train_y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        if verbose and step in shown:
            tqdm.write(f"  step {step + 1:>5}: loss {losses[-1]:.4f}")
    after = accuracy(model, task, split.test_x, split.test_y)
    return Trained(task, split, model, losses, before, after)


def weights_text(model: SimpleNetwork, task: Task) -> str:
    """Both layers' weights and biases, each column one neuron, each row one input."""
    hidden = [f"hidden {j + 1}" for j in range(model.hidden.weight.shape[1])]
    first = np.vstack([model.hidden.weight.data, model.hidden.bias.data])
    second = np.vstack([model.output.weight.data, model.output.bias.data])
    return "\n".join([
        "Into the hidden neurons (one column per neuron):",
        table([*task.inputs, "bias"], hidden, first),
        "Into the output neurons:",
        table([*hidden, "bias"], task.outputs, second),
    ])


def weighted_sum_text(name: str, inputs: np.ndarray, weights: np.ndarray, bias: float) -> str:
    """'name = x1*(w1) + x2*(w2) + ... + (b) = total': one neuron's sum, written out."""
    terms = " + ".join(f"{x:.3f}*({signed(w)})" for x, w in zip(inputs, weights))
    total = float(inputs @ weights + bias)
    return f"  {name} = {terms} + ({signed(bias)}) = {signed(total)}"


def forward_pass_text(model: SimpleNetwork, task: Task, raw: np.ndarray, label: int) -> str:
    """One example through the network by hand: scaled inputs, each sum, tanh, the verdict."""
    scaled = task.scaled(raw)
    hidden_w, hidden_b = model.hidden.weight.data, model.hidden.bias.data
    out_w, out_b = model.output.weight.data, model.output.bias.data
    lines = ["  inputs as measured: " + ", ".join(
        f"{name} {value:g}{unit}" for name, value, unit in zip(task.inputs, raw, task.units))]
    lines.append("  as the network reads them, each divided by its scale:")
    lines.append("    " + ", ".join(
        f"{value:g}/{scale:g} = {x:.3f}" for value, scale, x in zip(raw, task.scales, scaled)))
    activations = []
    for j in range(hidden_w.shape[1]):
        lines.append(weighted_sum_text(f"hidden {j + 1}", scaled, hidden_w[:, j], hidden_b[j]))
        activation = float(np.tanh(scaled @ hidden_w[:, j] + hidden_b[j]))
        lines.append(f"    tanh squashes it to {signed(activation)}")
        activations.append(activation)
    activations = np.asarray(activations)
    outputs = [float(activations @ out_w[:, k] + out_b[k]) for k in range(out_w.shape[1])]
    for k, name in enumerate(task.outputs):
        lines.append(weighted_sum_text(f"output {name!r}", activations, out_w[:, k], out_b[k]))
    lines.append(verdict_text(task, outputs, label))
    with no_grad():
        own = model(network_inputs(task, raw[None, :])).data[0]
    lines.append("  (the network's own forward pass gives "
                 + ", ".join(f"{signed(float(v))}" for v in own) + ": the same numbers)")
    return "\n".join(lines)


def verdict_text(task: Task, outputs, label: int) -> str:
    """Which output neuron is larger, what that means, and whether it is right."""
    k = int(np.argmax(outputs))
    other = 1 - k
    right = "right" if k == label else f"wrong: it is a {task.outputs[label]}"
    return (f"  {task.outputs[k]!r} ({signed(outputs[k])}) > {task.outputs[other]!r} "
            f"({signed(outputs[other])}), so the network says: {task.outputs[k]} ({right})")


def examples_text(task: Task, raw: np.ndarray, labels: np.ndarray, count: int = 4) -> str:
    rows = [f"  {', '.join(f'{n} {v:g}{u}' for n, v, u in zip(task.inputs, x, task.units))}"
            f"  -> {task.outputs[y]}" for x, y in zip(raw[:count], labels[:count])]
    return "\n".join(rows)


def run(steps: int = DEFAULT_STEPS, lr: float = DEFAULT_LR, seed: int = 0) -> dict[str, float]:
    """The whole demo, printed; returns each task's held-out accuracy."""
    task = LEAF_OR_FLOWER
    print(f"Task 1: {task.name}. Inputs: {', '.join(task.inputs)}. "
          f"Outputs: neuron 0 = {task.outputs[0]!r}, neuron 1 = {task.outputs[1]!r}.")
    split = make_split(task, seed=check_seed(seed))
    print(f"{len(split.train_y)} training examples and {len(split.test_y)} held-out ones "
          f"(seed {seed}).\nHow they were made: {task.rule}.\nFor example:")
    print(examples_text(task, split.train_x, split.train_y))
    print(f"\nGradient descent, {steps} steps, learning rate {lr} (loss: mean squared error):")
    result = train(task, steps, lr, seed, split=split)
    print(f"\nThe network's weights after training:\n{weights_text(result.model, task)}")
    print("\nOne forward pass, worked out in numbers (a held-out example):")
    print(forward_pass_text(result.model, task, split.test_x[0], int(split.test_y[0])))
    print(f"\nHeld-out accuracy: {result.accuracy:.1%} "
          f"(it was {result.accuracy_before:.1%} with the random starting weights)")
    second = RAIN_TOMORROW
    print(f"\nTask 2, the same network shape: {second.name}. The four inputs are now "
          f"{', '.join(second.inputs)};\nneuron 0 now means {second.outputs[0]!r}, "
          f"neuron 1 {second.outputs[1]!r}. Only the data and the reading changed.\n"
          f"How the data was made: {second.rule}.")
    other = train(second, steps, lr, seed)
    print(f"Held-out accuracy on {second.name}: {other.accuracy:.1%} "
          f"(random weights: {other.accuracy_before:.1%}). One held-out day:")
    with no_grad():
        outputs = other.model(network_inputs(second, other.split.test_x[:1])).data[0]
    print(examples_text(second, other.split.test_x, other.split.test_y, count=1))
    print(verdict_text(second, outputs, int(other.split.test_y[0])))
    return {task.name: result.accuracy, second.name: other.accuracy}
