"""Synthetic classification tasks for the article's first network, generated from a seed.

A network only ever sees numbers. A `Task` says what its four input numbers mean, how
they are scaled before the network reads them, and what each of its two outputs means.
Two tasks with the same shape can be learned by the same network: only the data and the
reading of the outputs change, which is the article's point.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from chalklm.errors import ConfigError


@dataclass(frozen=True)
class Task:
    """What the numbers mean: inputs (name, unit, scale) and the meaning of each output."""

    name: str
    inputs: tuple[str, ...]  # e.g. "R", "volume"
    units: tuple[str, ...]  # shown next to each raw value ("" for none)
    scales: tuple[float, ...]  # the network reads raw / scale, so every input is about 0..1
    outputs: tuple[str, ...]  # output neuron i means outputs[i]
    rule: str  # how the data was made, in words (the network never sees this)
    sample: Callable[[np.random.Generator, int], tuple[np.ndarray, np.ndarray]]

    def scaled(self, raw: np.ndarray) -> np.ndarray:
        """The numbers the network reads: each raw input divided by its scale."""
        return raw / np.asarray(self.scales, dtype=raw.dtype)


@dataclass(frozen=True)
class Split:
    """Raw inputs (n, 4) and labels (n,) for training and for held-out checking."""

    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray


def make_split(task: Task, n: int = 1000, held_out: float = 0.2, seed: int = 0) -> Split:
    """Draw `n` examples of `task` from `seed`; keep a fraction aside, never trained on."""
    if n < 10:
        raise ConfigError(f"need at least 10 examples to split, got n={n}")
    if not 0 < held_out < 1:
        raise ConfigError(f"held_out must be between 0 and 1, got {held_out}")
    rng = np.random.default_rng(seed)
    x, y = task.sample(rng, n)
    order = rng.permutation(n)
    x, y = x[order], y[order]
    cut = n - max(1, round(n * held_out))
    return Split(x[:cut], y[:cut], x[cut:], y[cut:])


# Leaves: green, small. A few are autumn-coloured (red, orange, brown): the colour alone
# would call those flowers, their size gives them away.
_LEAF_GREEN = (70, 140, 55)
_LEAF_AUTUMN = ((190, 70, 40), (215, 150, 45), (130, 85, 50))
# Flowers: any bright colour, bigger. A few are green (hellebores, hydrangeas in bud).
_FLOWER_COLOURS = (
    (220, 40, 50),  # red
    (240, 210, 40),  # yellow
    (150, 60, 180),  # purple
    (240, 240, 235),  # white
    (240, 130, 170),  # pink
    (245, 140, 30),  # orange
    (70, 90, 200),  # blue
    (150, 190, 90),  # green
)


def _colours(rng: np.random.Generator, palette, n: int, spread: float) -> np.ndarray:
    """`n` colours, each a random palette entry plus noise, clipped to 0..255."""
    base = np.asarray(palette, dtype=np.float64)[rng.integers(len(palette), size=n)]
    return np.clip(base + rng.normal(0, spread, size=(n, 3)), 0, 255)


def _leaves_and_flowers(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    is_flower = rng.random(n) < 0.5
    n_flowers = int(is_flower.sum())
    n_leaves = n - n_flowers
    autumn = rng.random(n_leaves) < 0.15
    leaf_rgb = np.where(
        autumn[:, None],
        _colours(rng, _LEAF_AUTUMN, n_leaves, 25),
        _colours(rng, [_LEAF_GREEN], n_leaves, 25),
    )
    flower_rgb = _colours(rng, _FLOWER_COLOURS, n_flowers, 25)
    # Volumes in millilitres, log-normal: leaves around 8 mL, flowers around 45 mL.
    leaf_volume = rng.lognormal(np.log(8.0), 0.5, n_leaves)
    flower_volume = rng.lognormal(np.log(40.0), 0.5, n_flowers)
    x = np.empty((n, 4))
    x[~is_flower, :3], x[~is_flower, 3] = leaf_rgb, leaf_volume
    x[is_flower, :3], x[is_flower, 3] = flower_rgb, flower_volume
    return np.round(x, 1), is_flower.astype(np.int64)


def _weather(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Tomorrow's weather from today's: rain when it is both cloudy and humid.

    Rain comes when cloud cover and humidity together are high; temperature and wind
    are distractors. 3% of days go against the rule, so 97% is the best one can do.
    """
    cloud = rng.uniform(0, 100, n)
    humidity = rng.uniform(20, 100, n)
    temperature = rng.normal(15, 7, n)
    wind = rng.gamma(2.0, 8.0, n)
    rain = cloud + humidity > 130
    rain ^= rng.random(n) < 0.03
    x = np.stack([cloud, humidity, temperature, wind], axis=1)
    return np.round(x, 1), rain.astype(np.int64)


LEAF_OR_FLOWER = Task(
    name="leaf or flower",
    inputs=("R", "G", "B", "volume"),
    units=("", "", "", " mL"),
    scales=(255.0, 255.0, 255.0, 100.0),
    outputs=("leaf", "flower"),
    rule="leaves are mostly green and around 8 mL, flowers any bright colour and around "
         "40 mL; autumn leaves and green flowers blur the line",
    sample=_leaves_and_flowers,
)

RAIN_TOMORROW = Task(
    name="rain tomorrow",
    inputs=("cloud cover", "humidity", "temperature", "wind"),
    units=("%", "%", " C", " km/h"),
    scales=(100.0, 100.0, 40.0, 50.0),
    outputs=("dry", "rain"),
    rule="rain when cloud cover + humidity > 130 (temperature and wind do not matter), "
         "with 3% of days going against the rule",
    sample=_weather,
)
