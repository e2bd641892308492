#!/usr/bin/env python3
"""Pruning schedules replayed offline on a weak upstream's real answers: which (every, keep) could keep the gain?

The prune bench (`cargo bench --bench prune`) costs ~16 s of llama-server per prompt and setting on 2 cores; this
replays the proxy's rounds (src/bon/prune) on answers already sampled (policy_samples.py: N per prompt, held-out
prompts) with an assembled reward model, in seconds, so that many schedules can be compared:

- every candidate is a sampled answer; a round comes every T tokens: the competing candidates (live ones cut after
  r*T tokens, finished ones whole) are scored through OUTPUT (`prefix_logits` or `logits`), the best ceil(c * keep)
  go on (at least one stopped, never fewer than one left), until one is left, which runs to its end;
- tokens: what was generated (a stopped candidate's r*T, a finished one's length) over every answer's full length;
- reward retained: (whole-answer score of the survivor - mean of the N) / (best of the N - mean), averaged over the
  prompts whose N scores differ — the bench's same-model grading.

Tokens are counted with the reward model's tokenizer (WordPiece), not the upstream's: the ratios are close to the
bench's, not the same. Run: python models/research/prune_schedules.py MODEL_DIR SAMPLES.jsonl[.gz] [OUTPUT ...]
"""

import itertools
import json
import math
import pathlib
import sys

import numpy as np
import onnxruntime as ort

sys.path[:0] = [str(pathlib.Path(__file__).resolve().parent.parent / d) for d in ("assembly", "training")]

import v2_data as D
from policy_samples import read_samples

SCHEDULES = [(t, k) for t in (16, 32, 48, 64, 96, 128) for k in (0.5, 0.25)]
# SCHEDULES=every:keep[:first],... overrides (e.g. "40:0.5,48:0.6,32:0.25:64").


class Scorer:
    """An assembled model directory's outputs on (prompt, response) pairs, encoded as bon-proxy encodes them, cached;
    `cut` cuts a response after n tokens of the same tokenizer."""

    def __init__(self, model_dir):
        self.session = ort.InferenceSession(str(model_dir / "model.onnx"), providers=["CPUExecutionProvider"])
        max_tokens = json.loads((model_dir / "tokenizer_config.json").read_text())["model_max_length"]
        self.pair = D.pair_tokenizer(model_dir / "tokenizer.json", max_tokens)
        self.cut = D.Cutter(model_dir / "tokenizer.json")
        self.cache = {}

    def scores(self, output, pairs):
        todo = [p for p in dict.fromkeys(pairs) if (output, p) not in self.cache]
        for chunk, feed in D.padded_feeds([self.pair.encode(p, r) for p, r in todo], 32):
            out = self.session.run([output], feed)[0][:, 0]
            for j, i in enumerate(chunk):
                self.cache[(output, todo[i])] = float(out[j])
        return [self.cache[(output, p)] for p in pairs]


def replay(scorer, output, prompt, texts, every, keep, first=None):
    """(tokens generated, survivor's index, all answers' tokens) for one prompt's answers under one schedule; `first`:
    the first round after that many tokens instead of `every` (a schedule the proxy does not offer yet)."""
    lengths = [scorer.cut.tokens(t) for t in texts]
    live, stopped_at = set(range(len(texts))), {}
    r = 0
    while len(live) > 1:
        r += 1
        at = (first or every) + (r - 1) * every
        pairs = [(prompt, scorer.cut(texts[i], at)) for i in sorted(live)]
        s = dict(zip(sorted(live), scorer.scores(output, pairs)))
        c = len(live)
        go_on = min(max(math.ceil(c * keep), 1), c - 1)
        ranked = sorted(live, key=lambda i: (-s[i], i))
        for i in ranked[go_on:]:
            stopped_at[i] = min(at, lengths[i])
            live.discard(i)
    tokens = sum(stopped_at.get(i, lengths[i]) for i in range(len(texts)))
    return tokens, next(iter(live)), sum(lengths)


def main(model_dir, samples, outputs):
    import os
    schedules = [(e, k, None) for e, k in SCHEDULES]
    if os.environ.get("SCHEDULES"):
        schedules = [(int(x[0]), float(x[1]), int(x[2]) if len(x) > 2 else None)
                     for x in (y.split(":") for y in os.environ["SCHEDULES"].split(","))]
    scorer = Scorer(model_dir)
    prompts = read_samples(samples)
    print(f"{len(prompts)} prompts, {model_dir.name}; tokens by the reward model's tokenizer")
    print("| output | first round | every | keep | tokens | reward retained |\n|---|---|---|---|---|---|")
    for output, (every, keep, first) in itertools.product(outputs, schedules):
        spent = total = 0
        retained = []
        for p in prompts:
            texts = [t for t in p["samples"] if t.strip()]
            whole = scorer.scores("logits", [(p["prompt"], t) for t in texts])
            tokens, winner, full = replay(scorer, output, p["prompt"], texts, every, keep, first)
            spent, total = spent + tokens, total + full
            mean, best = float(np.mean(whole)), max(whole)
            if best - mean > 1e-6:
                retained.append((whole[winner] - mean) / (best - mean))
        print(f"| {output} | {first or every} | {every} | {keep} | {spent / total:.2f}x | {np.mean(retained):.2f} "
              f"({len(retained)}) |")


def calibrate(model_dir, fit_path, check_path, cuts=(16, 32, 64, 96, 128), confidences=(0.8, 0.9, 0.95)):
    """The whole-answer output's calibration on partial answers of one model's own samples (what Best-of-N
    compares): per cut, the Platt scale of P(the one ahead after `cut` tokens is ahead at the end) fitted on every
    pair of FIT's answers, and on CHECK's pairs, for each confidence, the share beyond the margin and how often the
    one behind there really lost. Prints the card entry (`python ... --calibrate MODEL_DIR FIT CHECK`)."""
    from train_prefix import platt
    scorer = Scorer(model_dir)

    def gaps(path, cut):
        out = []
        for p in read_samples(path):
            texts = list(dict.fromkeys(t for t in p["samples"] if t.strip()))
            whole = scorer.scores("logits", [(p["prompt"], t) for t in texts])
            cut_texts = [scorer.cut(t, cut) for t in texts]
            part = scorer.scores("logits", [(p["prompt"], t) for t in cut_texts])
            for i, j in itertools.combinations(range(len(texts)), 2):
                if whole[i] != whole[j] and cut_texts[i] != cut_texts[j]:
                    sign = 1.0 if whole[i] > whole[j] else -1.0
                    out.append(sign * (part[i] - part[j]))
        return np.array(out)

    entries = []
    for cut in cuts:
        a = platt(gaps(fit_path, cut))
        g = gaps(check_path, cut)
        entry = {"tokens": cut, "scale": round(a, 4), "check_pairs": len(g),
                 "agreement": round(float(np.mean(g > 0)), 4)}
        for p in confidences:
            margin = np.log(p / (1 - p)) / a if a > 0 else np.inf
            beyond = np.abs(g) > margin
            entry[f"p{p}"] = {"margin": round(float(margin), 4), "share_beyond": round(float(beyond.mean()), 4),
                              "behind_lost": round(float(np.mean(g[beyond] > 0)), 4) if beyond.any() else None}
        entries.append(entry)
    print(json.dumps(entries, indent=1))


if __name__ == "__main__":
    if sys.argv[1:2] == ["--calibrate"] and len(sys.argv) == 5:
        sys.exit(calibrate(*map(pathlib.Path, sys.argv[2:5])))
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    main(pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2]), sys.argv[3:] or ["prefix_logits", "logits"])
