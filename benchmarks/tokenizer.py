"""chalklm's BPE against its peers, in the same run, single thread unless stated.

Training (Tiny Shakespeare; Multi30k English+German; vocab 1024, 4096, 16384):
  time against Hugging Face tokenizers' BpeTrainer with the same pattern and alphabet
  (goal: at most 2x), and against minbpe's recount-everything loop, written below
  (goal: at least 50x faster). The naive loop is timed over --naive-merges merges and
  its per-merge time extrapolated to the full count (--naive-full runs it all: hours).
Encoding the same files with the same vocabulary: MB/s of chalklm (first call, cache
  cold; and best of 3), tiktoken and tokenizers (goal: >= 0.5x tiktoken, >= 2x HF), the
  three timed in turns so that load from other programs slows them alike. Best of 3
  re-encodes a text chalklm's caches have seen whole, which tiktoken (no cache) cannot
  use; so also "unseen": a fresh tokenizer encodes the file's first half, then is timed
  on the second half (its words partly new), against tiktoken on that half: the rate
  on new text of the same kind. And
  encode_batch on all cores against one core, and against a thread pool.
One long chunk (a run of 100,000 and of 1,000,000 letters, which the pattern cannot
  split): the time ratio of the two (goal: under 40; the heap merge is O(n log n), a
  quadratic merge loop would take 100x).
Peak memory (--big): training on a ~100 MB corpus (the data repeated), each trainer in
  its own process, read from the kernel's peak resident size (goal: under 3 GB).
  chalklm gets the whole text as one string; tokenizers gets its lines (given one
  100 MB string it holds several GB).

    python benchmarks/tokenizer.py [--small] [--big] [--naive-merges 5] [--encode-only]

Writes benchmarks/results/tokenizer.json (--encode-only: the encoding tables alone, about
a minute, into tokenizer_encoding.json). Ratios, not absolute times, are the point.
"""

from __future__ import annotations

import os

os.environ.setdefault("RAYON_NUM_THREADS", "1")  # before tokenizers starts its thread pool
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import argparse  # noqa: E402
import json  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections import Counter  # noqa: E402
from concurrent.futures import ThreadPoolExecutor  # noqa: E402
from pathlib import Path  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def corpora(small: bool) -> dict[str, str]:
    from chalklm.data import dataset_file, load_text, read_text_file

    texts = {"shakespeare": load_text("shakespeare")}
    if not small:
        texts["multi30k en+de"] = "".join(
            read_text_file(dataset_file("multi30k", role)) for role in ("train.en", "train.de")
        )
    return texts


def best_of_each(fns: dict, repeats: int = 3) -> dict:
    """{name: best time} of each function, called in turns: a burst of load from another
    program then slows every contender, not only the one that happened to run during it."""
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: min(seconds) for name, seconds in times.items()}


def timed(fn, *args, repeats: int = 2, **kwargs):
    """(best time of `repeats` calls, the result of the last)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn(*args, **kwargs)
        times.append(time.perf_counter() - start)
    return min(times), result


# ----------------------------------------------------------------- peers
def hf_train(text, vocab_size: int, pattern: str):
    """BpeTrainer on `text` (a string, or an iterator of strings as its docs feed it)."""
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(pattern), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, min_frequency=2, show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator([text] if isinstance(text, str) else text, trainer)
    return tok


def naive_train(text: str, num_merges: int, pattern: str) -> tuple[list, float]:
    """minbpe's RegexTokenizer.train: every merge recounts every pair of every chunk."""
    import regex

    chunks = [list(c.encode("utf-8")) for c in regex.findall(pattern, text)]
    merges, start = [], time.perf_counter()
    for z in range(256, 256 + num_merges):
        counts = Counter()
        for ids in chunks:
            counts.update(zip(ids, ids[1:]))
        pair = max(counts, key=counts.get)
        merges.append(pair)
        for k, ids in enumerate(chunks):
            out, i = [], 0
            while i < len(ids):
                if i + 1 < len(ids) and ids[i] == pair[0] and ids[i + 1] == pair[1]:
                    out.append(z)
                    i += 2
                else:
                    out.append(ids[i])
                    i += 1
            chunks[k] = out
    return merges, time.perf_counter() - start


# ----------------------------------------------------------------- tables
def trained_tokenizers(texts, vocab_sizes):
    """chalklm's tokenizers, trained once and untimed (--encode-only: seconds, not minutes)."""
    from chalklm.tokenizers import BPETokenizer

    return {
        (name, vocab_size): BPETokenizer.train(text, vocab_size, "gpt4", progress=False)
        for name, text in texts.items()
        for vocab_size in vocab_sizes
    }


def training_table(texts, vocab_sizes, naive_merges, naive_full):
    from chalklm.tokenizers import BPETokenizer
    from chalklm.tokenizers.patterns import GPT4_PATTERN

    rows, tokenizers = [], {}
    for name, text in texts.items():
        naive_per_merge = None
        for vocab_size in vocab_sizes:
            ours_s, tok = timed(BPETokenizer.train, text, vocab_size, "gpt4", progress=False)
            hf_s, hf = timed(hf_train, text, vocab_size, GPT4_PATTERN)
            tokenizers[(name, vocab_size)] = tok
            merges = len(tok.merges)
            if naive_full:
                naive_s = naive_train(text, merges, GPT4_PATTERN)[1]
            else:
                if naive_per_merge is None:
                    seconds = naive_train(text, naive_merges, GPT4_PATTERN)[1]
                    naive_per_merge = seconds / naive_merges
                naive_s = naive_per_merge * merges
            rows.append({
                "corpus": name, "vocab": vocab_size, "merges": merges,
                "hf_vocab": hf.get_vocab_size(), "chalklm_s": ours_s, "hf_s": hf_s,
                "naive_s": naive_s, "naive_extrapolated": not naive_full,
                "x_hf_time": ours_s / hf_s, "speedup_vs_naive": naive_s / ours_s,
            })
            print_row(rows[-1], ["corpus", "vocab", "merges", "chalklm_s", "hf_s", "x_hf_time",
                                 "naive_s", "speedup_vs_naive"])
    return rows, tokenizers


def encoding_table(texts, tokenizers):
    from tokenizers import Tokenizer

    from chalklm.tokenizers import BPETokenizer

    rows = []
    for (name, vocab_size), tok in tokenizers.items():
        text = texts[name]
        megabytes = len(text.encode("utf-8")) / 1e6
        fresh = BPETokenizer.from_dict(tok.to_dict())
        start = time.perf_counter()
        ids = fresh.encode_ordinary(text)
        cold = time.perf_counter() - start
        tiktoken_enc = tok.to_tiktoken()
        with tempfile.TemporaryDirectory() as folder:
            tok.save_hf(Path(folder) / "tokenizer.json")
            hf = Tokenizer.from_file(str(Path(folder) / "tokenizer.json"))
        best = best_of_each({
            "chalklm": lambda: fresh.encode_ordinary(text),  # noqa: B023
            "tiktoken": lambda: tiktoken_enc.encode_ordinary(text),  # noqa: B023
            "hf": lambda: hf.encode(text, add_special_tokens=False),  # noqa: B023
        })
        warm, tt, hf_s = best["chalklm"], best["tiktoken"], best["hf"]
        unseen, tt_unseen, unseen_mb = unseen_seconds(tok, text, tiktoken_enc)
        assert ids == tiktoken_enc.encode_ordinary(text) == hf.encode(text).ids, "ids differ"
        rows.append({
            "corpus": name, "vocab": vocab_size, "chalklm_cold_MBps": megabytes / cold,
            "chalklm_MBps": megabytes / warm, "tiktoken_MBps": megabytes / tt,
            "hf_MBps": megabytes / hf_s, "x_tiktoken": tt / warm, "x_hf": hf_s / warm,
            "chalklm_unseen_MBps": unseen_mb / unseen, "x_tiktoken_unseen": tt_unseen / unseen,
        })
        print_row(rows[-1], list(rows[-1]))
    return rows


def unseen_seconds(tok, text: str, tiktoken_enc, repeats: int = 3):
    """(chalklm's, tiktoken's best time on the second half of `text`, its megabytes);
    chalklm's tokenizer fresh each time and warmed on the first half only."""
    from chalklm.tokenizers import BPETokenizer

    cut = text.index("\n", len(text) // 2) + 1
    seen, unseen = text[:cut], text[cut:]
    ours, theirs = [], []
    for _ in range(repeats):
        fresh = BPETokenizer.from_dict(tok.to_dict())
        fresh.encode_ordinary(seen)
        start = time.perf_counter()
        fresh.encode_ordinary(unseen)
        ours.append(time.perf_counter() - start)
        start = time.perf_counter()
        tiktoken_enc.encode_ordinary(unseen)
        theirs.append(time.perf_counter() - start)
    return min(ours), min(theirs), len(unseen.encode("utf-8")) / 1e6


def long_chunk_table(tokenizers, sizes=(100_000, 1_000_000)):
    """Seconds to encode one chunk of `n` equal letters, for each n, and their ratio."""
    tok = next(iter(tokenizers.values()))
    seconds = {}
    for n in sizes:
        seconds[n] = best_of_each({"chalklm": lambda: tok.encode("a" * n)})["chalklm"]  # noqa: B023
    row = {f"seconds_{n}": s for n, s in seconds.items()}
    row["ratio"] = seconds[sizes[-1]] / seconds[sizes[0]]
    print_row(row, list(row))
    return row


def cpu_seconds(fn) -> float:
    """CPU time `fn` costs: this process (all its threads) and the child processes it
    waited for. Unlike the wall clock, other programs' load hardly changes it."""
    import resource

    def children() -> float:
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        return usage.ru_utime + usage.ru_stime

    start, start_children = time.process_time(), children()
    fn()
    return time.process_time() - start + children() - start_children


def batch_table(texts, tokenizers):
    """encode_batch over lines of the corpus: processes, threads, one core (a loop of
    encode calls, and encode_batch with one worker), and tiktoken's encode_ordinary_batch
    on its thread pool (x_tiktoken_batch: chalklm's faster form against it).

    On a machine that other programs keep busy, the wall-clock speedup says little, so
    the CPU time of each is measured too: `x_processes_idle_bound` = cores x one core's
    CPU time / the processes' CPU time is the most the processes could gain on idle cores.
    """
    name, vocab_size = next(iter(tokenizers))
    tok = tokenizers[(name, vocab_size)]
    lines = texts[name].splitlines(keepends=True) * 2
    megabytes = sum(len(line.encode("utf-8")) for line in lines) / 1e6
    tok.encode_batch(lines[:1000])  # warm the cache, as in the rows above
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()

    def one_core():
        return [tok.encode(line) for line in lines]

    def processes():
        return tok.encode_batch(lines, num_workers=cores)

    tiktoken_encoding = tok.to_tiktoken()
    with ThreadPoolExecutor(cores) as pool:
        best = best_of_each({
            "one_core": one_core,
            "processes": processes,
            "threads": lambda: list(pool.map(tok.encode, lines, chunksize=256)),
            "batch_one_core": lambda: tok.encode_batch(lines, num_workers=1),
            "tiktoken_batch": lambda: tiktoken_encoding.encode_ordinary_batch(
                lines, num_threads=cores),
        }, 2)
    one_core_cpu, processes_cpu = cpu_seconds(one_core), cpu_seconds(processes)
    row = {"corpus": name, "lines": len(lines), "cores": cores,
           "load_average": os.getloadavg()[0],
           "one_core_MBps": megabytes / best["one_core"],
           "processes_MBps": megabytes / best["processes"],
           "threads_MBps": megabytes / best["threads"],
           "x_processes": best["one_core"] / best["processes"],
           "x_threads": best["one_core"] / best["threads"],
           "batch_one_core_MBps": megabytes / best["batch_one_core"],
           "tiktoken_batch_MBps": megabytes / best["tiktoken_batch"],
           "x_tiktoken_batch": best["tiktoken_batch"] / min(best["processes"],
                                                            best["batch_one_core"]),
           "one_core_cpu_s": one_core_cpu, "processes_cpu_s": processes_cpu,
           "x_processes_idle_bound": cores * one_core_cpu / processes_cpu}
    print_row(row, list(row))
    return [row]


PEAK_SCRIPT = """
import resource, sys, time
path, vocab, who = sys.argv[1], int(sys.argv[2]), sys.argv[3]
sys.path.insert(0, {bench!r})

def rss_mb(field):  # VmRSS: resident now; VmHWM: the peak so far (Linux)
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

text = open(path, encoding="utf-8").read()
after_read = rss_mb("VmRSS")
start = time.perf_counter()
if who == "chalklm":
    from chalklm.tokenizers import BPETokenizer
    BPETokenizer.train(text, vocab, progress=False)
else:
    from tokenizer import hf_train
    from chalklm.tokenizers.patterns import GPT4_PATTERN
    hf_train(iter(text.splitlines(keepends=True)), vocab, GPT4_PATTERN)  # lines, as HF's docs
print(time.perf_counter() - start, after_read, rss_mb("VmHWM"))
"""


def peak_memory_table(texts, megabytes: int, vocab_size: int):
    base = "".join(texts.values())
    path = RESULTS / "big_corpus.txt"
    copies = max(1, megabytes * 10**6 // len(base.encode("utf-8")))
    path.write_text(base * copies, encoding="utf-8")
    size_mb = path.stat().st_size / 1e6
    script = PEAK_SCRIPT.format(bench=str(Path(__file__).resolve().parent))
    rows = []
    for who in ("chalklm", "hf"):
        out = subprocess.run([sys.executable, "-c", script, str(path), str(vocab_size), who],
                             capture_output=True, text=True, check=True).stdout.split()
        rows.append({"trainer": who, "corpus_MB": size_mb, "vocab": vocab_size,
                     "seconds": float(out[0]), "rss_after_reading_MB": float(out[1]),
                     "peak_rss_MB": float(out[2])})
        print_row(rows[-1], list(rows[-1]))
    path.unlink()
    return rows


def print_row(row: dict, keys: list[str]) -> None:
    cells = []
    for key in keys:
        value = row[key]
        cells.append(f"{key}={value:.3g}" if isinstance(value, float) else f"{key}={value}")
    print("  ".join(cells), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small", action="store_true",
                        help="Tiny Shakespeare and vocab 1024 only: proves the script works")
    parser.add_argument("--big", action="store_true", help="also peak memory on ~100 MB")
    parser.add_argument("--big-mb", type=int, default=100)
    parser.add_argument("--naive-merges", type=int, default=5,
                        help="merges timed for the naive baseline's per-merge cost")
    parser.add_argument("--naive-full", action="store_true", help="run the naive loop fully")
    parser.add_argument("--encode-only", action="store_true",
                        help="only the encoding and encode_batch tables (about a minute)")
    args = parser.parse_args()
    RESULTS.mkdir(exist_ok=True)
    texts = corpora(args.small)
    vocab_sizes = [1024] if args.small else [1024, 4096, 16384]
    results = {"cpu_count": os.cpu_count(), "small": args.small,
               "load_average_at_start": os.getloadavg()}
    if args.encode_only:
        tokenizers = trained_tokenizers(texts, vocab_sizes)
    else:
        print("== training (seconds; single thread) ==")
        results["training"], tokenizers = training_table(
            texts, vocab_sizes, args.naive_merges, args.naive_full
        )
    print("== encoding (MB/s; single thread) ==")
    results["encoding"] = encoding_table(texts, tokenizers)
    print("== encode_batch ==")
    results["encode_batch"] = batch_table(texts, tokenizers)
    print("== one long chunk (10x the letters: near-linear is about 10x the time) ==")
    results["long_chunk"] = long_chunk_table(tokenizers)
    if args.big and not args.encode_only:
        print(f"== peak memory, training on ~{args.big_mb} MB ==")
        results["peak_memory"] = peak_memory_table(texts, args.big_mb, 4096)
    results["load_average_at_end"] = os.getloadavg()  # other programs' load, 1/5/15 min
    out = RESULTS / ("tokenizer_encoding.json" if args.encode_only else "tokenizer.json")
    out.write_text(json.dumps(results, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
