#!/usr/bin/env python3
"""Calibrates the degenerate-text guard's threshold (src/bon/guard.rs) on real text.

The guard flags a text with at least MIN_WORDS words whose last TAIL_WORDS words (lower-cased, split on whitespace)
repeat at least REPETITIVE_SHARE of their 4-grams (SHORT_SHARE for a text of SHORT_MIN_WORDS to MIN_WORDS words) (the share of 4-grams that already occurred earlier in that
window; a loop runs to the length limit, so it is at the end). This script computes that share, exactly as the Rust
code does, for
  - every answer in ../shared/data/preferences/train.jsonl.gz (the GPT-4 reference answers and 50 generators'), and
  - the looping SmolLM2 answers captured from llama-server in tests/fixtures/loops.json (when present),
and prints the distribution, the answers above the threshold, and the share of loops caught.
Run: python3 models/training/guard_calibration.py   (standard library only)
"""

import gzip
import json
import pathlib
import sys

HERE = pathlib.Path(__file__).resolve().parent
DATA = HERE.parent.parent.parent / "shared" / "data" / "preferences" / "train.jsonl.gz"
LOOPS = HERE.parent.parent / "tests" / "fixtures" / "loops.json"
REPETITIVE_SHARE = 0.4
MIN_WORDS = 24
SHORT_SHARE = 0.75
SHORT_MIN_WORDS = 12
TAIL_WORDS = 32
GRAM = 4


def repeated_share(text):
    words = text.lower().split()[-TAIL_WORDS:]
    if len(words) < GRAM:
        return 0.0
    grams = [tuple(words[i:i + GRAM]) for i in range(len(words) - GRAM + 1)]
    seen, repeated = set(), 0
    for g in grams:
        if g in seen:
            repeated += 1
        seen.add(g)
    return repeated / len(grams)


def flagged(text):
    words = len(text.split())
    if words >= MIN_WORDS:
        return repeated_share(text) >= REPETITIVE_SHARE
    return words >= SHORT_MIN_WORDS and repeated_share(text) >= SHORT_SHARE


def quantiles(xs):
    xs = sorted(xs)
    return {q: round(xs[min(len(xs) - 1, int(q * len(xs)))], 3) for q in (0.5, 0.9, 0.99, 0.999, 1.0)}


def main():
    rows = [json.loads(line) for line in gzip.open(DATA, "rt")]
    answers = {}
    for r in rows:
        gen = r["source"].split(":", 1)[1]
        for side in ("chosen", "rejected"):
            answers.setdefault(r[side], set()).add(gen)
    # The reference answer of a prompt is the text shared by all of its pairs.
    by_prompt = {}
    for r in rows:
        for side in ("chosen", "rejected"):
            by_prompt.setdefault(r["prompt"], {}).setdefault(r[side], 0)
            by_prompt[r["prompt"]][r[side]] += 1
    references = {max(c, key=c.get) for c in by_prompt.values()}
    shares = {t: repeated_share(t) for t in answers}
    ref_shares = [shares[t] for t in references]
    report = {
        "threshold": REPETITIVE_SHARE,
        "min_words": MIN_WORDS,
        "answers": len(shares),
        "answers_flagged": sum(flagged(t) for t in shares),
        "answer_share_quantiles": quantiles(list(shares.values())),
        "reference_answers": len(references),
        "reference_answers_flagged": sum(flagged(t) for t in references),
        "reference_share_max": round(max(ref_shares), 3),
    }
    one_flagged = [r for r in rows if flagged(r["chosen"]) != flagged(r["rejected"])]
    report["pairs_with_one_side_flagged"] = len(one_flagged)
    report["of_those_judge_preferred_the_flagged_side"] = sum(flagged(r["chosen"]) for r in one_flagged)
    if LOOPS.exists():
        loops = json.loads(LOOPS.read_text())["loops"]
        report["captured_loops"] = len(loops)
        report["captured_loops_flagged"] = sum(flagged(l["text"]) for l in loops)
        report["captured_loops_missed"] = [l["unit"] for l in loops if not flagged(l["text"])]
        coherent = json.loads(LOOPS.read_text())["coherent"]
        report["captured_coherent"] = len(coherent)
        report["captured_coherent_flagged"] = sum(flagged(c["text"]) for c in coherent)
    print(json.dumps(report, indent=2))
    print("\nflagged answers (first 5):", file=sys.stderr)
    for t in [t for t in shares if flagged(t)][:5]:
        print(f"--- share {shares[t]:.2f}, generators {sorted(answers[t])}\n{t[:400]}", file=sys.stderr)


if __name__ == "__main__":
    main()
