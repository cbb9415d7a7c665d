"""`chalklm sample`: generate text from a checkpoint, with either engine.

The text is written to the terminal token by token as it is produced. `--json` prints one
machine-readable result instead (with `path`: which code computed the tokens, as
`--verbose` says on stderr); `--show-probs` prints, for each new token, the top
candidates after softmax with their chances (the article's softmax at work).
"""

from __future__ import annotations

import json
import sys
import time

from chalklm.cli.common import non_negative_float, positive_int, seed, utf8_text

DEFAULT_CANDIDATES = 5


def register(subparsers) -> None:
    p = subparsers.add_parser("sample", help="generate text from a trained checkpoint")
    p.add_argument("--checkpoint", required=True,
                   help="a checkpoint folder, or a run folder (its best/ is used)")
    p.add_argument("--prompt", default="",
                   help="text to continue (default: none; generation then starts from the "
                        "tokenizer's <|endoftext|> token if it has one, else a newline)")
    p.add_argument("--max-new-tokens", type=positive_int, default=300,
                   help="tokens to generate after the prompt (default: %(default)s)")
    p.add_argument("--temperature", type=non_negative_float, default=0.8,
                   help="0 = greedy; higher = more random (default: %(default)s)")
    p.add_argument("--top-k", type=positive_int, default=None,
                   help="pick only among the k most likely tokens")
    p.add_argument("--top-p", type=float, default=None,
                   help="pick only among the most likely tokens whose chances add up to p")
    p.add_argument("--min-p", type=float, default=None,
                   help="drop tokens less likely than min-p times the most likely one")
    p.add_argument("--repetition-penalty", type=float, default=1.0,
                   help="above 1 discourages tokens already in the text (default: 1, none)")
    p.add_argument("--stop", action="append", default=None, metavar="TEXT",
                   help="end a sample when it writes TEXT (not printed); may be repeated")
    p.add_argument("--num-samples", type=positive_int, default=1,
                   help="independent continuations of the same prompt (default: 1)")
    p.add_argument("--seed", type=seed, default=None,
                   help="seed of the random choices: same seed, same text")
    p.add_argument("--engine", choices=["torch", "scratch"], default="torch",
                   help="torch (fast) or scratch (the NumPy glass box) (default: torch)")
    p.add_argument("--device", choices=["cpu", "cuda", "auto"], default="auto",
                   help="auto: a CUDA GPU if PyTorch sees one, else the CPU")
    p.add_argument("--dtype", default="float32",
                   help="the fast engine's number type: float32 (fp32), bfloat16 (bf16) or "
                        "float16 (fp16) (default: %(default)s)")
    p.add_argument("--no-cache", action="store_true",
                   help="re-read the whole text at every step instead of using the KV cache")
    p.add_argument("--compile", action="store_true",
                   help="compile the one-token step with torch.compile (slow once, then faster)")
    p.add_argument("--json", action="store_true", help="print one JSON result, not the text")
    p.add_argument("--verbose", action="store_true",
                   help="afterwards, say on stderr which code computed the tokens (the C "
                        "step, PyTorch, the glass box) and how fast")
    p.add_argument("--show-probs", type=positive_int, nargs="?", const=DEFAULT_CANDIDATES,
                   default=None, metavar="N",
                   help="for each new token, print the top N candidates after softmax "
                        f"(default N: {DEFAULT_CANDIDATES})")
    p.set_defaults(func=run)


def _cut_at_stop(text: str, stop: list[str]) -> tuple[str, str | None]:
    """The text before the first stop string in it, and that string (or None)."""
    hits = [(text.find(s), s) for s in stop if s in text]
    if not hits:
        return text, None
    at, s = min(hits)
    return text[:at], s


class TextStream:
    """Writes a row's text as its ids arrive. It holds back what may still change: a
    character cut in the middle of its bytes (decoded as U+FFFD until it is whole) and
    the last characters that could be the start of a stop string."""

    def __init__(self, tokenizer, stop: list[str], out=None):
        self.tokenizer, self.stop, self.out = tokenizer, stop, out or sys.stdout
        self.ids: list[int] = []
        self.written = 0
        self.hold = max((len(s) for s in stop), default=1) - 1

    def add(self, token: int) -> None:
        self.ids.append(token)
        text, stopped_by = _cut_at_stop(self.tokenizer.decode(self.ids), self.stop)
        end = len(text) if stopped_by else len(text.rstrip("\ufffd")) - self.hold
        self._write(text, end)

    def finish(self) -> None:
        text, _ = _cut_at_stop(self.tokenizer.decode(self.ids), self.stop)
        self._write(text, len(text))
        self.out.write("\n")
        self.out.flush()

    def _write(self, text: str, end: int) -> None:
        if end > self.written:
            self.out.write(text[self.written:end])
            self.out.flush()
            self.written = end


def _top(probs, tokenizer, n: int) -> list[tuple[str, float]]:
    import numpy as np

    best = np.argsort(-probs, kind="stable")[:n]
    return [(tokenizer.decode([int(i)]), float(probs[i])) for i in best]


def run(args) -> int:
    from chalklm.errors import ConfigError
    from chalklm.generation import Controls, load, stream

    Controls(args.temperature, args.top_k, args.top_p, args.min_p, args.repetition_penalty)
    utf8_text(args.prompt, "--prompt")
    for text in args.stop or []:
        utf8_text(text, "--stop")
    model, tokenizer = load(args.checkpoint, args.engine, args.device, args.dtype)
    if tokenizer is None:
        raise ConfigError(f"{args.checkpoint}: no tokenizer.json, so no way to read the prompt "
                          "or write text; use chalklm.generate with ids instead")
    prompt_ids, start = _prompt(args, tokenizer)
    stop = args.stop or []
    steps = stream(model, [prompt_ids], args.max_new_tokens, temperature=args.temperature,
                   top_k=args.top_k, top_p=args.top_p, min_p=args.min_p,
                   repetition_penalty=args.repetition_penalty, seed=args.seed, stop=stop,
                   num_samples=args.num_samples, tokenizer=tokenizer,
                   use_cache=not args.no_cache, probs=args.show_probs is not None,
                   compile=args.compile)
    live = args.num_samples == 1 and not args.json
    printer = TextStream(tokenizer, stop) if live and args.show_probs is None else None
    if printer is not None:
        sys.stdout.write(args.prompt)
    elif args.show_probs is not None and not args.json:
        print(f"each new token, then the {args.show_probs} likeliest candidates after "
              f"softmax (temperature {args.temperature}):")
    samples, tops, timing, path = _written(lambda: _collect(steps, args, tokenizer, printer),
                                           model.config.vocab_size, tokenizer, args.checkpoint)
    if printer is not None:
        _written(printer.finish, model.config.vocab_size, tokenizer, args.checkpoint)
        if args.verbose:
            _say_how(samples, timing, path)
        return 0
    texts = _written(lambda: [tokenizer.decode(ids) for ids in samples],
                     model.config.vocab_size, tokenizer, args.checkpoint)
    results = []
    for ids, top, whole in zip(samples, tops, texts):
        text, stopped_by = _cut_at_stop(whole, stop)
        result = {"text": text, "ids": ids, "stopped_by": stopped_by}
        if args.show_probs is not None:
            result["top"] = top
        results.append(result)
    if args.json:
        report = _json_report(args, start, prompt_ids, stop, results, timing)
        print(json.dumps({**report, "path": path}, ensure_ascii=False))
        return 0
    for i, result in enumerate(results):
        if args.num_samples > 1:
            print(f"--- sample {i + 1} ---")
        print(args.prompt + result["text"])
    if args.verbose:
        _say_how(samples, timing, path)
    return 0


def _written(write, model_vocab: int, tokenizer, checkpoint):
    """`write()`; an id the tokenizer cannot turn into text means the checkpoint's
    tokenizer.json has fewer ids than its model: said with both sizes."""
    from chalklm.errors import TokenizerError

    try:
        return write()
    except TokenizerError as exc:
        if tokenizer.vocab_size >= model_vocab:
            raise
        raise TokenizerError(f"{checkpoint}: the model wrote an id its tokenizer lacks ({exc}): "
                             f"the tokenizer has {tokenizer.vocab_size} ids, the model "
                             f"{model_vocab}; tokenizer.json belongs to another model") from None


def _prompt(args, tokenizer) -> tuple[list[int], str | None]:
    """The prompt's ids, and what generation starts from when the prompt is empty."""
    from chalklm.errors import TokenizerError, UnknownCharacterError
    from chalklm.generation import beginning

    try:
        prompt_ids = tokenizer.encode(args.prompt)
    except UnknownCharacterError as error:  # one clear line, in the terms of this command
        raise TokenizerError(f"--prompt: {error.problem}; the model has no token for it: "
                             "leave it out of the prompt") from None
    start = None
    if not prompt_ids:
        start = beginning(tokenizer)[1]
        if not args.json:
            print(f"(empty prompt: starting from {start})", file=sys.stderr)
    return prompt_ids, start


def _collect(steps, args, tokenizer, printer):
    """Run generation: each row's new ids, each row's top candidates (with --show-probs,
    printed as they come unless --json), and (seconds, seconds to the first token)."""
    samples = [[] for _ in range(args.num_samples)]
    tops = [[] for _ in range(args.num_samples)]
    started = time.perf_counter()
    first_token_s, path = None, ""
    for step in steps:
        first_token_s = first_token_s or time.perf_counter() - started
        path = step.path
        for b, token in enumerate(step.ids):
            if token is None:
                continue
            samples[b].append(token)
            if printer is not None:
                printer.add(token)
            if step.probs is not None:
                top = _top(step.probs[b], tokenizer, args.show_probs)
                tops[b].append(top)
                if not args.json:
                    tag = f"[{b + 1}] " if args.num_samples > 1 else ""
                    cands = "  ".join(f"{t!r} {p:6.1%}" for t, p in top)
                    print(f"{tag}{tokenizer.decode([token])!r:>8}  <-  {cands}")
    return samples, tops, (time.perf_counter() - started, first_token_s or 0.0), path


def _say_how(samples, timing, path: str) -> None:
    """--verbose: which code computed the tokens, and how fast (on stderr: the text on
    stdout stays the text)."""
    seconds, first_token_s = timing
    n = sum(len(ids) for ids in samples)
    rate = f" ({n / seconds:.1f} tokens/s)" if seconds > 0 else ""
    print(f"{n} tokens in {seconds:.2f} s{rate}, the first after {first_token_s:.2f} s; "
          f"computed by {path}", file=sys.stderr)


def _json_report(args, start, prompt_ids, stop, results, timing) -> dict:
    seconds, first_token_s = timing
    n = sum(len(r["ids"]) for r in results)
    return {
        "checkpoint": str(args.checkpoint), "engine": args.engine, "prompt": args.prompt,
        "start": start, "prompt_ids": prompt_ids,
        "controls": {"max_new_tokens": args.max_new_tokens, "temperature": args.temperature,
                     "top_k": args.top_k, "top_p": args.top_p, "min_p": args.min_p,
                     "repetition_penalty": args.repetition_penalty, "seed": args.seed,
                     "stop": stop, "num_samples": args.num_samples},
        "samples": results, "new_tokens": n, "seconds": round(seconds, 4),
        "first_token_seconds": round(first_token_s, 4),
        "tokens_per_second": round(n / seconds, 1) if seconds > 0 else None,
    }
