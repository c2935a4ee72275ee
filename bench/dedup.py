"""Benchmark: near-duplicate detection over synthetic GSM8k-length rows with planted pairs.

    python bench/dedup.py                       # 200,000 rows, 2,000 planted pairs, threshold 0.8
    python bench/dedup.py --rows 20000 --pairs 500 --decontam

Rows are made from the real GSM8k train questions: statement sentences from
random questions up to a drawn length of 40-60 words, then one question sentence
(its last 25 words at most); numbers redrawn (1-999) and mid-sentence capitalized
words (names, mostly) swapped for random ones. ``--pairs`` of them get a copy with one or two adjacent words
substituted, inserted or deleted, kept only if its exact shingle Jaccard with the
source is >= threshold + 0.05 (a near duplicate by construction, not a borderline
one); copies sit at random places in the order.

Figures:
- seconds: ``find_near_duplicates`` over all rows (normalize, shingle, sketch,
  LSH query/insert, verify); data generation is timed apart.
- peak_mb: the process's peak resident set (``resource.getrusage`` ru_maxrss),
  generated data included; the RSS before detection is printed too.
  (tracemalloc would miss rensa's Rust allocations.)
- recall: planted pairs whose later row is dropped, mapped to its partner or to a
  row with exact Jaccard >= threshold.
- precision: dropped rows whose match is their planted partner or has exact
  Jaccard >= threshold (MinHash can estimate a 0.78 pair at 0.8: that counts
  against precision).
The last line is one JSON object: {"rows", "seconds", "peak_mb", "recall", "precision"}.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import resource
import statistics
import time
from pathlib import Path

from augscale.augment.dedup import find_near_duplicates, normalized_words, word_ngrams

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "gsm8k" / "train.jsonl"
_SENTENCE = re.compile(r"(?<=[.?!])\s+(?=[A-Z])")
_NUMBER = re.compile(r"\d+(?:[.,]\d+)?")


def load_sentences(path: Path) -> tuple[list[str], list[str], list[str]]:
    """Statement sentences, question sentences, and capitalized mid-sentence words (names)."""
    statements, questions, names = [], [], set()
    with open(path) as f:
        for line in f:
            for sentence in _SENTENCE.split(json.loads(line)["question"].strip()):
                (questions if sentence.endswith("?") else statements).append(sentence)
                names.update(w for w in sentence.split()[1:] if w.isalpha() and w[0].isupper())
    return statements, questions, sorted(names)


def make_row(rng: random.Random, statements: list[str], questions: list[str], names: list[str]) -> str:
    """One synthetic question of 40-60 words."""
    target = rng.randint(40, 60)
    question = rng.choice(questions).split()[-25:]
    words: list[str] = []
    while len(words) < target - len(question):
        words += rng.choice(statements).split()
    words = words[: target - len(question)] + question
    words = [_NUMBER.sub(lambda _: str(rng.randint(1, 999)), w) for w in words]
    return " ".join(rng.choice(names) if i and w.isalpha() and w[0].isupper() else w for i, w in enumerate(words))


def shingle_set(text: str, ngram: int) -> set[str]:
    return set(word_ngrams(normalized_words(text), ngram))


def jaccard(a: set[str], b: set[str]) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


def plant_copy(rng: random.Random, text: str, vocab: list[str], min_jaccard: float, ngram: int) -> str:
    """A copy of ``text`` with 1-2 adjacent words substituted/inserted/deleted, above ``min_jaccard``."""
    source = shingle_set(text, ngram)
    for _ in range(100):
        words = text.split()
        at = rng.randrange(len(words) - 1)
        for _ in range(rng.randint(1, 2)):
            op = rng.choice(("substitute", "insert", "delete"))
            if op == "substitute":
                words[at] = rng.choice(vocab)
            elif op == "insert":
                words.insert(at, rng.choice(vocab))
            else:
                del words[at]
            at = min(at + 1, len(words) - 1)
        copy = " ".join(words)
        if min_jaccard <= jaccard(source, shingle_set(copy, ngram)) < 1.0:
            return copy
    raise RuntimeError(f"could not plant a copy above Jaccard {min_jaccard}; lower --threshold")


def make_data(args) -> tuple[list[str], list[str], dict[str, str]]:
    """Row ids, texts, and {copy id: source id} for the planted pairs."""
    rng = random.Random(args.seed)
    statements, questions, names = load_sentences(args.data)
    vocab = sorted({w for s in statements for w in s.split() if w.isalpha()})
    base = [make_row(rng, statements, questions, names) for _ in range(args.rows - args.pairs)]
    rows = [(f"row-{i}", t) for i, t in enumerate(base)]
    planted = {}
    for j, i in enumerate(rng.sample(range(len(base)), args.pairs)):
        copy = plant_copy(rng, base[i], vocab, args.threshold + 0.05, args.ngram)
        rows.append((f"copy-{j}", copy))
        planted[f"copy-{j}"] = f"row-{i}"
    rng.shuffle(rows)
    return [r[0] for r in rows], [r[1] for r in rows], planted


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def score(ids, texts, planted, dups, threshold, ngram) -> tuple[float, float, list[float]]:
    """Recall and precision as defined in the module docstring, and the planted pairs' Jaccards."""
    text_of = dict(zip(ids, texts))
    position = {row_id: i for i, row_id in enumerate(ids)}

    def true_pair(a: str, b: str) -> bool:
        if planted.get(a) == b or planted.get(b) == a:
            return True
        return jaccard(shingle_set(text_of[a], ngram), shingle_set(text_of[b], ngram)) >= threshold

    found = 0
    planted_j = []
    for copy, source in planted.items():
        planted_j.append(jaccard(shingle_set(text_of[copy], ngram), shingle_set(text_of[source], ngram)))
        later = max(copy, source, key=position.get)
        found += later in dups and true_pair(later, dups[later])
    correct = sum(true_pair(a, b) for a, b in dups.items())
    return found / len(planted), (correct / len(dups) if dups else 1.0), planted_j


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--rows", type=int, default=200_000, help="rows in all, planted copies included (default: %(default)s)")
    parser.add_argument("--pairs", type=int, default=2_000, help="planted near-duplicate pairs (default: %(default)s)")
    parser.add_argument("--threshold", type=float, default=0.8, help="MinHash Jaccard threshold; planted copies sit 0.05 above it (default: %(default)s)")
    parser.add_argument("--ngram", type=int, default=3, help="words per shingle (default: %(default)s)")
    parser.add_argument("--num-perm", type=int, default=128, help="MinHash permutations, a power of two (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="data generation seed (default: %(default)s)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="GSM8k train.jsonl (default: %(default)s)")
    parser.add_argument("--decontam", action="store_true",
                        help="also time find_contaminated of all rows against GSM8k test.jsonl (beside --data)")
    args = parser.parse_args()
    if not 0 < args.pairs < args.rows:
        parser.error("--pairs must be between 0 and --rows")

    t0 = time.perf_counter()
    ids, texts, planted = make_data(args)
    gen_s = time.perf_counter() - t0
    words = [len(t.split()) for t in texts]
    print(f"generated {len(ids):,} rows ({args.pairs:,} planted copies) in {gen_s:.1f} s; "
          f"words/row mean {statistics.mean(words):.1f}, min {min(words)}, max {max(words)}")

    rss_before = rss_mb()
    t0 = time.perf_counter()
    dups = find_near_duplicates(ids, texts, threshold=args.threshold, num_perm=args.num_perm, ngram=args.ngram)
    seconds = time.perf_counter() - t0
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    recall, precision, planted_j = score(ids, texts, planted, dups, args.threshold, args.ngram)

    print(f"detection: {seconds:.1f} s for {len(ids):,} rows ({len(ids) / seconds:,.0f} rows/s), "
          f"{len(dups):,} dropped")
    print(f"memory: peak RSS {peak_mb:,.0f} MB (ru_maxrss, whole process); RSS before detection {rss_before:,.0f} MB")
    print(f"planted pairs: exact Jaccard min {min(planted_j):.3f}, median {statistics.median(planted_j):.3f}")
    print(f"recall {recall:.4f}, precision {precision:.4f} (threshold {args.threshold}, {args.ngram}-gram shingles)")
    if args.decontam:
        from augscale.augment.decontam import find_contaminated

        test_path = args.data.with_name("test.jsonl")
        with open(test_path) as f:
            eval_texts = [json.loads(line)["question"] for line in f]
        t0 = time.perf_counter()
        flagged = find_contaminated(ids, texts, eval_texts)
        print(f"decontam: {time.perf_counter() - t0:.1f} s for {len(ids):,} rows against {len(eval_texts):,} "
              f"test questions, {len(flagged):,} flagged")
    print(json.dumps({"rows": len(ids), "seconds": round(seconds, 2), "peak_mb": round(peak_mb, 1),
                      "recall": round(recall, 4), "precision": round(precision, 4)}))


if __name__ == "__main__":
    main()
