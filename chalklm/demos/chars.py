"""The article's first language model: guess the next character, then write by guessing.

Every character gets a number (its id in a `CharTokenizer`). A `NextCharacterModel`
reads the ids of the previous few characters and scores each possible next one. It
learns on Tiny Shakespeare: for every window of text, the character after it is the
right answer, and the loss is cross-entropy (minus the log of the chance it gave the
right answer). A model that knows nothing gives every one of the V characters chance 1/V,
a loss of ln V (ln 65 = 4.17 on Shakespeare); the demo prints the loss falling from there.
To write, it picks a next character from its chances, appends it, and feeds the text,
now one character longer, back in: each output becomes part of the next input.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from tqdm import tqdm

from chalklm.demos import defaults
from chalklm.demos.show import check_seed, report_steps
from chalklm.errors import ConfigError
from chalklm.generation import generate
from chalklm.scratch import Tensor, manual_seed, no_grad, softmax
from chalklm.scratch.models import NextCharacterModel
from chalklm.scratch.optim import AdamW
from chalklm.tokenizers import CharTokenizer


@dataclass(frozen=True)
class Settings:
    """The model's size and how it trains (defaults: about a minute on two CPU cores)."""

    context: int = 8  # characters the model sees before the one it guesses
    embedding_dim: int = 16
    hidden: int = 512
    batch_size: int = 256
    lr: float = 0.01
    held_out: float = 0.1  # the end of the text, never trained on
    eval_windows: int = 2048  # windows per loss estimate


@dataclass
class TrainedChars:
    model: NextCharacterModel
    tokenizer: CharTokenizer
    history: list[tuple[int, float, float]] = field(default_factory=list)  # step, train, held


def windows(ids: np.ndarray, ends: np.ndarray, context: int) -> tuple[np.ndarray, np.ndarray]:
    """Inputs ids[end-context:end] (one row per end) and the characters ids[end] to guess."""
    rows = ends[:, None] + np.arange(-context, 0)
    return ids[rows], ids[ends]


def random_windows(ids: np.ndarray, count: int, context: int,
                   rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    if len(ids) <= context:
        raise ConfigError(f"the text has {len(ids)} characters: too short for windows of "
                          f"{context} plus one to guess")
    return windows(ids, rng.integers(context, len(ids), size=count), context)


def split_ids(text: str, held_out: float) -> tuple[CharTokenizer, np.ndarray, np.ndarray]:
    """The vocabulary of the whole text, and its ids cut into a training and a held-out part."""
    tokenizer = CharTokenizer(text)
    ids = np.asarray(tokenizer.encode(text), dtype=np.int64)
    cut = int(len(ids) * (1 - held_out))
    return tokenizer, ids[:cut], ids[cut:]


def mean_loss(model: NextCharacterModel, x: np.ndarray, y: np.ndarray) -> float:
    """The model's cross-entropy on these windows, without recording anything for backward."""
    model.eval()
    with no_grad():
        _, loss = model(x, y)
    model.train()
    return loss.item()


def train(text: str, steps: int = defaults.CHARS_STEPS, seed: int = 0,
          settings: Settings = Settings(), verbose: bool = True) -> TrainedChars:
    """AdamW on random batches of windows; the loss on fixed train and held-out windows is
    measured a few times along the way (`history`) and printed when `verbose`."""
    if steps <= 0:
        raise ConfigError(f"steps must be above 0, got {steps}")
    rng = np.random.default_rng(check_seed(seed))
    manual_seed(seed)
    tokenizer, train_ids, held_ids = split_ids(text, settings.held_out)
    c = settings.context
    model = NextCharacterModel(tokenizer.vocab_size, c, settings.embedding_dim, settings.hidden)
    optimizer = AdamW(model.parameters(), lr=settings.lr)
    train_eval = random_windows(train_ids, settings.eval_windows, c, rng)
    held_eval = random_windows(held_ids, settings.eval_windows, c, rng)
    result = TrainedChars(model, tokenizer)
    if verbose:
        print(f"Vocabulary: {tokenizer.vocab_size} characters; knowing nothing means a loss of "
              f"ln {tokenizer.vocab_size} = {math.log(tokenizer.vocab_size):.2f}")
    bar = tqdm(range(steps), desc="training", unit="step", disable=not verbose)

    def measure(done: int) -> None:
        measured = (done, mean_loss(model, *train_eval), mean_loss(model, *held_eval))
        result.history.append(measured)
        bar.set_postfix(loss=f"{measured[1]:.3f}")
        if verbose:
            tqdm.write(f"  after {done:>6} steps: train loss {measured[1]:.3f}, "
                       f"held-out loss {measured[2]:.3f}")

    measure(0)
    shown = {s + 1 for s in report_steps(steps)} - {1}
    for step in bar:
        # the step size shrinks in a straight line to a tenth: big moves first, then fine ones
        optimizer.param_groups[0]["lr"] = settings.lr * (1 - 0.9 * step / steps)
        x, y = random_windows(train_ids, settings.batch_size, c, rng)
        _, loss = model(x, y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step + 1 in shown:
            measure(step + 1)
    return result


def pad_id(tokenizer: CharTokenizer) -> int:
    """What fills a window before the text is long enough: a new line, if the text has one."""
    return tokenizer.stoi.get("\n", 0)


def next_logits(trained: TrainedChars):
    """`ids (1, n) -> scores of the next character`, as chalklm.generation wants it.

    The model reads exactly `context` ids: longer texts are cut to their last `context`,
    shorter ones padded on the left with `pad_id`, as if the text began on a fresh line.
    """
    model, pad = trained.model, pad_id(trained.tokenizer)

    def scores(ids: np.ndarray) -> np.ndarray:
        window = np.concatenate([np.full(model.context, pad), ids[0]])[-model.context:]
        model.eval()
        with no_grad():
            logits, _ = model(window[None, :])
        return logits.data[0]

    return scores


def next_chances(trained: TrainedChars, window: str) -> np.ndarray:
    """The model's chance for each vocabulary character to come after `window`."""
    tokenizer = trained.tokenizer
    logits = next_logits(trained)(np.asarray([tokenizer.encode(window)], dtype=np.int64))
    return softmax(Tensor(logits), axis=-1).data


def chances_text(trained: TrainedChars, window: str, actual: str, top: int = 5) -> str:
    """The `top` likeliest next characters after `window`, and the one the text really has."""
    chances, chars = next_chances(trained, window), trained.tokenizer.chars
    best = np.argsort(chances)[::-1][:top]
    guesses = "   ".join(f"{chars[i]!r} {chances[i]:.3f}" for i in best)
    return (f"After {window!r} the model gives the next character these chances "
            f"(softmax of its {len(chances)} scores; the {top} likeliest):\n  {guesses}\n"
            f"  The text really goes on with {actual!r}, which it gave "
            f"{chances[trained.tokenizer.stoi[actual]]:.3f}.")


def sample(trained: TrainedChars, length: int, temperature: float = 1.0, seed: int = 0,
           prompt: str = "") -> str:
    """`length` new characters, each picked from the model's chances given the ones before
    (softmax of its scores divided by `temperature`), then fed back in as input."""
    model, tokenizer = trained.model, trained.tokenizer
    prompt_ids = tokenizer.encode(prompt) if prompt else [pad_id(tokenizer)]
    new = generate(next_logits(trained), prompt_ids, length, block_size=model.context,
                   temperature=temperature, seed=check_seed(seed))[0]
    return tokenizer.decode(new)


def run(steps: int = defaults.CHARS_STEPS, seed: int = 0, length: int = defaults.CHARS_LENGTH,
        temperature: float = 1.0, prompt: str = "") -> TrainedChars:
    """The whole demo, printed: load the text, train, then generate a sample."""
    from chalklm.data import load_default_text

    if length <= 0:
        raise ConfigError(f"length must be above 0, got {length}")
    name, text = load_default_text()
    CharTokenizer(text).encode(prompt)  # a prompt the model cannot read fails before training
    settings = Settings()
    print(f"Text: {name}, {len(text):,} characters (the last {settings.held_out:.0%} held out). "
          f"The model reads {settings.context} characters and guesses the next.")
    trained = train(text, steps, seed, settings)
    start = int(len(text) * (1 - settings.held_out)) + 40  # a spot in the held-out text
    window = text[start - settings.context:start]
    print("\n" + chances_text(trained, window, text[start]))
    print(f"\n{length} characters, generated one at a time (temperature {temperature}, "
          f"seed {seed}):\n")
    print(prompt + sample(trained, length, temperature, seed, prompt))
    return trained
