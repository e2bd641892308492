#!/usr/bin/env python3
"""What pruning could keep on a weak upstream's own answers, with any schedule and with scorers fitted on them.

Two questions behind issue 21's goal (>= 0.8 of Best-of-8's gain at <= 0.45x the tokens and <= 0.35x the time to the
first content token), answered on SmolLM2-135M's answers (policy_samples.py: 8 per prompt, 259 training prompts and 40
held-out prompts; the default never trained on any of them):

- `frontier`: every schedule of up to three rounds, each keeping a chosen number of candidates (a superset of what
  `--prune-every/--prune-keep` can express), whose last round ends by DEADLINE tokens (the winner is known, and
  streams, from then on: what the time to first token needs), replayed with the default's whole-answer output (what
  it prunes with). Prints the Pareto frontier of (tokens, reward retained). With more than one candidate left after
  the last round, they run to the end and the best whole answer wins.
- `fit`: can the upstream's own answers teach a better prefix scorer? A linear correction on the default's head
  input (`bon_x`, 2,564 features; with `--deep`, also the deep model's six-layer features and score) over the
  whole-answer output, s = (1 + g) * logits + w . x, fitted by pairwise logistic loss to the order the whole-answer
  output gives the *whole* answers (what pruning must predict), on every pair of one prompt's answers cut at 16..240
  tokens. Measured by 5-fold cross-validation over all 299 prompts (40 held-out prompts alone move reward retained by
  +-0.05 between fits), against the uncorrected output: pairwise agreement at each cut and replayed reward retained.

Tokens are the reward model's (WordPiece). Features are computed once into WORK/features*.npz (~5 min; the deep
model's ~6 min). Run: python models/research/prefix_frontier.py {frontier|fit} WORK [--deep]
(numpy, onnx, onnxruntime, tokenizers; `fit` also torch).
"""

import itertools
import math
import os
import pathlib
import sys

import numpy as np
import onnx
import onnxruntime as ort

MODELS = pathlib.Path(__file__).resolve().parent.parent
sys.path[:0] = [str(MODELS / d) for d in ("assembly", "training")]

import v2_data as D
from policy_samples import read_samples

SAMPLES = {"train": MODELS / "training/policy-smollm2/train.jsonl.gz",
           "val": MODELS / "training/policy-smollm2/val.jsonl.gz"}
CUTS = tuple(range(16, 256, 16))
DEADLINE = int(os.environ.get("DEADLINE", 112))  # the last round by then (Run 4: rounds ending at 96 -> 0.30x TTFT)
EVERY = (32, 48, 64)


def features(model_dir, feature, out):
    """Every answer cut at CUTS (those longer than the cut) and whole (cut 0): the model's `logits` and `feature`."""
    if out.exists():
        return dict(np.load(out))
    model = onnx.load(str(model_dir / "model.onnx"))
    model.graph.output.append(onnx.helper.make_tensor_value_info(feature, onnx.TensorProto.FLOAT, None))
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    pair, cut = D.pair_tokenizer(model_dir / "tokenizer.json", 512), D.Cutter(model_dir / "tokenizer.json")
    seqs, meta = [], []
    for path in SAMPLES.values():
        for s in read_samples(path):
            for c, text in enumerate(t for t in s["samples"] if t.strip()):
                length = cut.tokens(text)
                for at in (0,) + tuple(n for n in CUTS if n < length):
                    seqs.append(pair.encode(s["prompt"], cut(text, at) if at else text))
                    meta.append((s["index"], c, at, length))
    logits, x = np.zeros(len(seqs), np.float32), [None] * len(seqs)
    for chunk, feed in D.padded_feeds(seqs, 64):
        a, b = session.run(["logits", feature], feed)
        logits[chunk] = a[:, 0]
        for j, i in enumerate(chunk):
            x[i] = b[j]
    m = np.array(meta)
    data = {"x": np.stack(x), "logits": logits, "prompt": m[:, 0], "cand": m[:, 1], "cut": m[:, 2],
            "length": m[:, 3]}
    np.savez_compressed(out, **data)
    return data


class Answers:
    """The answers' rows: `row(p, c, at)` is answer c of prompt p as it stands after `at` tokens."""

    def __init__(self, f):
        self.index = {(int(p), int(c), int(a)): i for i, (p, c, a) in enumerate(zip(f["prompt"], f["cand"], f["cut"]))}
        self.prompts = sorted({int(p) for p in f["prompt"]})
        self.cands = {p: sorted(c for (q, c, a) in self.index if q == p and a == 0) for p in self.prompts}
        whole = [i for (p, c, a), i in self.index.items() if a == 0]
        self.whole = {(int(f["prompt"][i]), int(f["cand"][i])): float(f["logits"][i]) for i in whole}
        self.length = {(int(f["prompt"][i]), int(f["cand"][i])): int(f["length"][i]) for i in whole}

    def row(self, p, c, at):
        return self.index[(p, c, at)] if self.length[(p, c)] > at else self.index[(p, c, 0)]

    def pairs(self, prompts, cuts=CUTS):
        """(rows a, rows b, a's whole answer ahead) for every pair of one prompt's answers at each cut, unless both
        have finished by then or their whole answers tie."""
        a, b, y = [], [], []
        for p, at in itertools.product(prompts, cuts):
            for ci, cj in itertools.combinations(self.cands[p], 2):
                gap = self.whole[(p, ci)] - self.whole[(p, cj)]
                if gap and max(self.length[(p, ci)], self.length[(p, cj)]) > at:
                    a.append(self.row(p, ci, at)), b.append(self.row(p, cj, at)), y.append(float(gap > 0))
        return np.array(a), np.array(b), np.array(y, np.float32)

    def agreement(self, s, prompts, cuts=(16, 32, 48, 64, 96, 128)):
        out = []
        for at in cuts:
            a, b, y = self.pairs(prompts, (at,))
            out.append(float(np.mean((s[a] > s[b]) == (y > 0.5))))
        return out

    def replay(self, s, prompts, plan):
        """(tokens / all tokens, mean reward retained) of `plan` [(after tokens, candidates kept)] scored by `s`."""
        spent = total = 0
        retained = []
        for p in prompts:
            cs, live, stopped = self.cands[p], set(self.cands[p]), {}
            for at, keep in plan:
                if len(live) < 2:
                    break
                for c in sorted(live, key=lambda c: (-s[self.row(p, c, at)], c))[min(keep, len(live) - 1):]:
                    stopped[c] = min(at, self.length[(p, c)])
                    live.discard(c)
            winner = max(live, key=lambda c: self.whole[(p, c)])
            spent += sum(stopped.get(c, self.length[(p, c)]) for c in cs)
            total += sum(self.length[(p, c)] for c in cs)
            scores = [self.whole[(p, c)] for c in cs]
            mean, best = np.mean(scores), max(scores)
            if best - mean > 1e-6:
                retained.append((self.whole[(p, winner)] - mean) / (best - mean))
        return spent / total, float(np.mean(retained))


def every(n, keep=0.5, rounds=8):
    """The proxy's `--prune-every n --prune-keep keep` as a plan for 8 candidates."""
    plan, live = [], 8
    for r in range(1, rounds):
        live = min(max(math.ceil(live * keep), 1), live - 1) if live > 1 else 1
        plan.append((r * n, live))
    return plan


def frontier(answers, s):
    ats = [n for n in CUTS if n <= DEADLINE]
    plans = [[(a, 1)] for a in ats]
    plans += [[(a, k), (b, 1)] for a, b in itertools.combinations(ats, 2) for k in range(2, 7)]
    plans += [[(a, k), (b, j), (c, 1)] for a, b, c in itertools.combinations(ats, 3)
              for k in range(2, 7) for j in range(1, k)]
    results = sorted((*answers.replay(s, answers.prompts, plan), plan) for plan in plans)
    print(f"{len(answers.prompts)} prompts; Pareto frontier of {len(plans)} plans deciding by {DEADLINE} tokens "
          "(plan: [(after tokens, kept)])\n| tokens | reward retained | plan |\n|---|---|---|")
    best = -1.0
    for tokens, kept, plan in results:
        if kept > best:
            best = kept
            print(f"| {tokens:.3f}x | {kept:.3f} | {plan} |")
    for n in EVERY:
        print(f"every {n} keep 0.5 (decides at {every(n)[2][0]} tokens): {answers.replay(s, answers.prompts, every(n))}")


def fit(answers, x, logits, lams=(1.0, 0.1, 0.01), folds=5):
    """The correction fitted on four folds' prompts and measured on the fifth's, for each L2 weight. The features are
    standardised over all rows (no labels read), the only thing the test folds share with the fit."""
    import torch
    z = torch.tensor((x - x.mean(0)) / (x.std(0) + 1e-6), dtype=torch.float32)
    base = torch.tensor(logits)

    def train(prompts, lam):
        a, b, y = answers.pairs(prompts)
        dz, dl, target = z[a] - z[b], base[a] - base[b], torch.tensor(y)
        w, g = torch.zeros(z.shape[1], requires_grad=True), torch.zeros(1, requires_grad=True)
        opt = torch.optim.LBFGS([w, g], max_iter=100, line_search_fn="strong_wolfe")

        def closure():
            opt.zero_grad()
            loss = torch.nn.functional.binary_cross_entropy_with_logits((1 + g) * dl + dz @ w, target)
            loss = loss + lam * (w * w).sum()
            loss.backward()
            return loss
        opt.step(closure)
        return ((1 + g) * base + z @ w).detach().numpy()

    order = np.random.default_rng(0).permutation(answers.prompts)
    parts = [[int(p) for p in part] for part in np.array_split(order, folds)]
    print(f"{len(answers.prompts)} prompts, {folds}-fold; agreement at 16/32/48/64/96/128 tokens; replayed "
          f"(tokens, retained) at every {'/'.join(map(str, EVERY))} keep 0.5")
    print("| scorer | agreement | " + " | ".join(f"every {n}" for n in EVERY) + " |\n|---|---|" + "---|" * len(EVERY))

    def row(name, per_fold):
        agree = np.mean([answers.agreement(s, test) for s, test in per_fold], 0)
        plays = [np.mean([answers.replay(s, test, every(n)) for s, test in per_fold], 0) for n in EVERY]
        print(f"| {name} | {' / '.join(f'{v:.3f}' for v in agree)} | "
              + " | ".join(f"{t:.2f}x, {r:.3f}" for t, r in plays) + " |", flush=True)
    row("whole-answer output", [(logits, part) for part in parts])
    for lam in lams:
        folds_ = []
        for k, test in enumerate(parts):
            train_prompts = [p for j, part in enumerate(parts) if j != k for p in part]
            folds_.append((train(train_prompts, lam), test))
        row(f"+ linear correction, L2 {lam}", folds_)


def main(command, work):
    work.mkdir(parents=True, exist_ok=True)
    f = features(MODELS / "default", "bon_x", work / "features.npz")
    answers = Answers(f)
    if command == "frontier":
        return frontier(answers, f["logits"])
    x = f["x"]
    if "--deep" in sys.argv:
        g = features(MODELS / "default-deep", "bon_z", work / "features-deep.npz")
        assert all((g[k] == f[k]).all() for k in ("prompt", "cand", "cut"))
        x = np.concatenate([x, g["x"], g["logits"][:, None]], 1)
    fit(answers, x, f["logits"])


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a != "--deep"]
    if len(args) != 2 or args[0] not in ("frontier", "fit"):
        sys.exit(__doc__)
    main(args[0], pathlib.Path(args[1]))
