#!/usr/bin/env python3
"""Trains the default model's **prefix head** (`prefix_logits`, models/assembly/prefix_head.npz) and calibrates its margins.

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
P(the candidate ahead by `gap` at that prefix is ahead at the end) = sigmoid(a * gap), fitted on half the
validation prompts (even positions in sorted order) and checked on the other half (odd): for P in CONFIDENCES, the
share of pairs whose gap exceeds logit(P) / a and how often the one behind really lost.

`--distill`: the labels are the whole-answer head's instead (soft: sigmoid of its score gap on the *whole*
answers), which is what pruning must predict to keep the answer the proxy would have picked; writes
WORK_DIR/prefix_head_distill.npz / .json. `--evaluate`: no training, the card recomputed for the weights already
written. Reported for both: accuracy against the judge's labels, and agreement with the whole-answer head's order
("agreement_with_whole_head"); the shipped calibration is against the latter (whether the one behind now is behind
at the end, by the scorer that picks), the judge-labelled one is kept beside it.

Run: python models/training/train_prefix.py WHEEL_DIR WORK_DIR   (the same WORK_DIR as train_fast.py: its feature cache is
reused and extended by the prefixes; ~20 minutes on 2 cores). Writes prefix_head.npz / .json; assemble_default.py
adds the head to models/default as the `prefix_logits` output and the calibration to its config.json.
`--parity`: checks the assembled graph's `prefix_logits` against the trained head.
"""

import json
import os
import pathlib
import sys
import time

import numpy as np
import torch

sys.path[:0] = [str(pathlib.Path(__file__).resolve().parent.parent / d) for d in ("assembly",)]  # models/<role>/ siblings

import assemble_default as asm
from policy_samples import read_samples
import default_features as F
import train_default as T
import train_fast as TF
import v2_data as D

CUTS = (16, 32, 64, 96, 128)
PER_ROW = 2
EPOCHS = 2
CONFIDENCES = (0.8, 0.9, 0.95)


def cut_rows(rows, cutter, cuts, keep_whole=False):
    """`rows` with both answers cut after each of `cuts` tokens (a row per cut), `cut` recorded (and with
    `keep_whole` the row it was cut from, as "whole"); pairs whose prefixes are equal, or that no cut shortens, are
    left out."""
    out = []
    for r in rows:
        for n in cuts:
            c, j = cutter(r["chosen"], n), cutter(r["rejected"], n)
            if c != j and (c, j) != (r["chosen"], r["rejected"]):
                row = {"prompt": r["prompt"], "chosen": c, "rejected": j, "source": r["source"], "cut": n}
                if keep_whole:
                    row["whole"] = r
                out.append(row)
    return out


def training_rows(d, cutter, whole=None):
    """The whole pairs, the loops and each pair cut at PER_ROW random cuts. With `whole` (the whole-answer head), every
    row is labelled by it instead (distillation, `--distill`): target = sigmoid(whole(chosen) - whole(rejected)) of
    the *whole* answers, what pruning must predict to keep the answer the proxy would pick."""
    rng = np.random.default_rng(5)
    picked = []
    for r in d.train_rows:
        cuts = tuple(int(c) for c in rng.choice(CUTS, size=PER_ROW, replace=False))
        picked += cut_rows([r], cutter, cuts, keep_whole=whole is not None)
    rows = d.train_rows + d.train_loops + picked
    if whole is not None:
        c, j = D.sides([r.get("whole", r) for r in rows])
        target = 1 / (1 + np.exp(-(whole.scores(c) - whole.scores(j)).astype(np.float64)))
        rows = [dict(r, target=float(t)) for r, t in zip(rows, target)]
    return rows


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
    emb, cutter = TF.Embeddings(d.backbone_dir), D.Cutter(d.backbone_dir / "tokenizer.json")
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


def by_whole_head(rows, whole):
    """`rows` oriented by the whole-answer head instead of the judge: "chosen" is the side whose *whole* answer it
    scores higher (what the proxy would pick at the end); ties dropped. What pruning must not get wrong."""
    full = [r.get("whole", r) for r in rows]
    c, j = D.sides(full)
    ahead = whole.scores(c) - whole.scores(j)
    out = []
    for r, g in zip(rows, ahead):
        if g > 0:
            out.append(r)
        elif g < 0:
            out.append(dict(r, chosen=r["rejected"], rejected=r["chosen"]))
    return out


def policy_rows(path, cutter, cuts_per_pair=None, seed=7):
    """Every pair of one prompt's sampled answers (policy_samples.py's file, or gzipped), whole and cut: at each of CUTS, or at
    `cuts_per_pair` of them drawn at random. Cut rows keep the whole pair ("whole"), which labels them."""
    rng = np.random.default_rng(seed)
    rows = []
    for s in read_samples(path):
        texts = list(dict.fromkeys(t for t in s["samples"] if t.strip()))
        pairs = [{"prompt": s["prompt"], "chosen": a, "rejected": b, "source": "policy"}
                 for i, a in enumerate(texts) for b in texts[i + 1:]]
        for r in pairs:
            cuts = CUTS if cuts_per_pair is None else tuple(int(c) for c in rng.choice(CUTS, cuts_per_pair, False))
            rows += [r] + cut_rows([r], cutter, cuts, keep_whole=True)
    return rows


def policy(wheels, work, train_path, val_path):
    """`--policy TRAIN VAL`: the prefix head refitted with a weak upstream's own answers (policy_samples.py) beside
    the distilled rows, labels from the whole-answer head; reports agreement with the whole-answer head's order at
    every cut on VAL (answers to prompts no head saw) for the whole-answer head, the shipped prefix head and the new
    one, and the held-out table as before. Writes WORK/prefix_head_policy.npz / .json."""
    d = T.prepare(wheels, work, 10**9, F.FAST)
    if os.environ.get("PREFIX_SMOKE"):  # a quick run of the code path: a few rows of everything
        k = int(os.environ["PREFIX_SMOKE"])
        d.train_rows, d.train_loops, d.val = d.train_rows[:k], d.train_loops[:k], d.val[:k]
    emb = TF.Embeddings(d.backbone_dir)
    cutter = D.Cutter(d.backbone_dir / "tokenizer.json")
    whole = TF.Model(d, emb, TF.K)
    warm_start(whole)
    shipped = TF.Model(d, emb, TF.K)
    warm_start(shipped, asm.PREFIX_WEIGHTS)
    val = policy_rows(val_path, cutter)
    val_by_cut = {n: [r for r in val if r.get("cut") == n] for n in CUTS}
    held_by_cut = {n: cut_rows(d.val, cutter, (n,), keep_whole=True) for n in CUTS}
    # PREFIX_POLICY_ONLY=1: a fine-tune of the shipped prefix head on the policy's answers alone (every cut), instead
    # of a refit of everything from the whole-answer head.
    only = bool(os.environ.get("PREFIX_POLICY_ONLY"))
    fit = ([] if only else training_rows(d, cutter, whole)) + policy_rows(train_path, cutter, None if only else PER_ROW)
    d.store.ensure(D.all_sequences([val, fit] + list(held_by_cut.values())))
    pol = [r for r in fit if r["source"] == "policy"]
    c, j = D.sides([r.get("whole", r) for r in pol])
    target = 1 / (1 + np.exp(-(whole.scores(c) - whole.scores(j)).astype(np.float64)))
    fit = [r for r in fit if r["source"] != "policy"] + [dict(r, target=float(t)) for r, t in zip(pol, target)]
    print(f"fitting {len(fit)} pairs ({len(pol)} from the policy's answers)", file=sys.stderr)
    new = TF.Model(d, emb, TF.K)
    # PREFIX_WARM=whole: start the fine-tune from the whole-answer head instead.
    warm_start(new, asm.PREFIX_WEIGHTS if only and os.environ.get("PREFIX_WARM") != "whole" else asm.FAST.weights)
    started = time.time()
    epochs = int(os.environ.get("PREFIX_EPOCHS", EPOCHS))  # 0: no fitting, the tables for the heads as they are
    for _ in new.fit(fit, epochs=epochs) if epochs else ():
        pass
    minutes = round((time.time() - started) / 60, 1)
    np.savez_compressed(work / "prefix_head_policy.npz", **new.weights())

    def acc(model, rows_):
        c_, r_ = D.sides(rows_)
        return round(T.accuracy(model.scores(c_), model.scores(r_)), 4)

    def table(sets):
        return {str(n): {"pairs": len(v), "whole_head": acc(whole, v), "shipped_prefix_head": acc(shipped, v),
                         "policy_prefix_head": acc(new, v)} for n, v in sets.items()}
    card = {"policy_train": str(train_path), "policy_val": str(val_path), "policy_only": only, "fit_pairs": len(fit),
            "policy_pairs": len(pol), "train_minutes": minutes,
            "agreement_on_policy_val": table({n: by_whole_head(v, whole) for n, v in val_by_cut.items()}),
            "agreement_on_held_out": table({n: by_whole_head(v, whole) for n, v in held_by_cut.items()})}
    prompts = sorted(d.held_prompts)
    halves = (set(prompts[0::2]), set(prompts[1::2]))
    card["calibration"] = calibration(new.scores, {n: by_whole_head(v, whole) for n, v in held_by_cut.items()}, halves)
    (work / "prefix_head_policy.json").write_text(json.dumps({"card": card}, indent=1) + "\n")
    print(json.dumps(card, indent=1))


def main(wheels, work):
    distill, evaluate_only = "--distill" in sys.argv, "--evaluate" in sys.argv
    weights_path, card_path = ((work / "prefix_head_distill.npz", work / "prefix_head_distill.json") if distill
                               else (asm.PREFIX_WEIGHTS, asm.PREFIX_CARD))
    d = T.prepare(wheels, work, 10**9, F.FAST)
    emb = TF.Embeddings(d.backbone_dir)
    cutter = D.Cutter(d.backbone_dir / "tokenizer.json")
    whole = TF.Model(d, emb, TF.K)
    warm_start(whole)
    val_by_cut = {n: cut_rows(d.val, cutter, (n,), keep_whole=True) for n in CUTS} | {"whole": d.val}
    loops_by_cut = {n: cut_rows(d.val_loops, cutter, (n,)) for n in CUTS}
    d.store.ensure(D.all_sequences(list(val_by_cut.values()) + list(loops_by_cut.values())))
    prefix = TF.Model(d, emb, TF.K)
    rows, minutes = None, None
    if evaluate_only:
        warm_start(prefix, weights_path)
    else:
        rows = training_rows(d, cutter, whole if distill else None)
        d.store.ensure(D.all_sequences([rows]))
        print(f"fitting {len(rows)} pairs ({len(rows) - len(d.train_rows) - len(d.train_loops)} cut)",
              file=sys.stderr)
        warm_start(prefix)
        started = time.time()
        for _ in prefix.fit(rows, epochs=EPOCHS):
            pass
        minutes = round((time.time() - started) / 60, 1)
        np.savez_compressed(weights_path, **prefix.weights())

    def acc(model, rows_):
        c, r = D.sides(rows_)
        return round(T.accuracy(model.scores(c), model.scores(r)), 4)

    def table(sets):
        return {str(n): {"pairs": len(v), "whole_head": acc(whole, v), "prefix_head": acc(prefix, v)}
                for n, v in sets.items()}
    oriented = {n: by_whole_head(v, whole) for n, v in val_by_cut.items()}
    accuracy, agreement, loops = table(val_by_cut), table(oriented), table(loops_by_cut)
    for name, t in (("held-out pairs (judge)", accuracy), ("order of the whole-answer head", agreement),
                    ("reference vs its own loop", loops)):
        print(name, json.dumps(t), file=sys.stderr)

    prompts = sorted(d.held_prompts)
    halves = (set(prompts[0::2]), set(prompts[1::2]))
    cuts = {n: v for n, v in oriented.items() if n != "whole"}
    judged = {n: v for n, v in val_by_cut.items() if n != "whole"}
    card = {
        "output": "prefix_logits",
        "labels": "the whole-answer head's (soft, distilled)" if distill else "the judge's (GPT-4-Turbo) preference",
        "cuts": list(CUTS),
        "per_row": PER_ROW,
        "epochs": EPOCHS,
        "fit_pairs": len(rows) if rows else None,
        "train_minutes": minutes,
        "warm_start": "default_head.npz",
        "accuracy": accuracy,
        "agreement_with_whole_head": agreement,
        "loops": loops,
        # What --prune-confidence reads: P(the one behind now is behind at the end, by the whole-answer head).
        "calibration": calibration(prefix.scores, cuts, halves),
        "calibration_whole_head": calibration(whole.scores, cuts, halves),
        "calibration_vs_judge": calibration(prefix.scores, judged, halves),
    }
    if evaluate_only and card_path.exists():
        previous = json.loads(card_path.read_text())["card"]
        card |= {k: previous[k] for k in ("fit_pairs", "train_minutes") if previous.get(k) is not None}
    card_path.write_text(json.dumps({"card": card}, indent=1) + "\n")
    print(json.dumps(card, indent=1))


if __name__ == "__main__":
    if "--policy" in sys.argv:
        k = sys.argv.index("--policy")
        rest = sys.argv[1:k] + sys.argv[k + 3:]
        sys.exit(policy(pathlib.Path(rest[0]), pathlib.Path(rest[1]), pathlib.Path(sys.argv[k + 1]),
                        pathlib.Path(sys.argv[k + 2])))
    args = [a for a in sys.argv[1:] if a not in ("--parity", "--distill", "--evaluate")]
    if len(args) != 2:
        sys.exit(__doc__)
    (parity if "--parity" in sys.argv else main)(pathlib.Path(args[0]), pathlib.Path(args[1]))
