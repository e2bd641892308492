#!/usr/bin/env python3
"""Experiments on the default model's head that did not replace it; their numbers are in the model card
(models/README.md, "Tried and not shipped"). Same split, loops and feature cache as train_default.py.

1. Length split as in ODIN (Chen et al. 2024, "ODIN: Disentangled Reward Mitigates Hacking in RLHF"): during
   training P(chosen > rejected) = sigmoid(q_c + l_c - q_r - l_r), q the quality head (the usual MLP, blind to the
   length features), l a linear length head (tokens in the window, window full, tokens of the whole response), plus
   lam * corr(q, response length)^2 per batch, which pushes what correlates with length into l; only q would ship.
   Weights averaged over the last two thirds of the epochs. lam in {0, 10, 30}, measured twice: on two inner folds
   held out from the TRAINING data by generator AND by prompt (how lam would have to be picked), and on validation.
2. Depth: the v2 head trained on the features of the first k depths only (embeddings; + layer 2; + layer 4; all),
   next to what the backbone costs when the graph is cut after that depth: 8 candidates filling the 256-token
   window, one batch, 2 threads, ONNX Runtime's Python binding, median of 10 runs.

Run: python models/research/head_experiments.py WHEEL_DIR WORK_DIR   (numpy, onnx, onnxruntime, tokenizers; WORK_DIR as for
train_default.py, whose feature cache it reuses). Prints JSON.
"""

import json
import pathlib
import sys
import time

import numpy as np

sys.path[:0] = [str(pathlib.Path(__file__).resolve().parent.parent / d) for d in ("assembly", "training")]  # models/<role>/ siblings

import default_features as F
import train_default as T
import v2_data as D

LAMBDA = [0.0, 10.0, 30.0]
EPOCHS, LR = 15, 3e-4
# The length features q does not see: log response tokens in the window, window full.
LENGTH = [F.N_FEATURES - F.N_SCALARS, F.N_FEATURES - 1]


def corr_penalty_grad(q, length, lam):
    """Gradient of lam * corr(q, length)^2 over one batch."""
    qn, ln = q - q.mean(), length - length.mean()
    sq, sl = np.sqrt(np.mean(qn * qn)) + 1e-6, np.sqrt(np.mean(ln * ln)) + 1e-6
    c = np.mean(qn * ln) / (sq * sl)
    return 2 * lam * c * (ln / (len(q) * sq * sl) - c * qn / (len(q) * sq * sq))


def fit_split(zc, zr, len_c, len_r, lam, seed=0):
    """The quality head q of the length split (module docstring), length columns' weights zeroed."""
    rng = np.random.default_rng(seed)
    p = T.init(zc.shape[1], T.HIDDEN[-1], rng)
    p["a"] = np.zeros(len(LENGTH) + 1)
    m, s = ({k: np.zeros_like(v) for k, v in p.items()} for _ in range(2))
    avg, n_avg, t = {k: np.zeros_like(v) for k, v in p.items()}, 0, 0
    lc_all = np.concatenate([zc[:, LENGTH], len_c[:, None]], 1)
    lr_all = np.concatenate([zr[:, LENGTH], len_r[:, None]], 1)
    qc_all, qr_all = zc.copy(), zr.copy()
    qc_all[:, LENGTH] = qr_all[:, LENGTH] = 0
    for epoch in range(EPOCHS):
        order = rng.permutation(len(zc))
        for start in range(0, len(order), T.BATCH):
            idx = order[start:start + T.BATCH]
            (oc, cc), (orr, cr) = T.forward(p, qc_all[idx]), T.forward(p, qr_all[idx])
            lc, lr = lc_all[idx], lr_all[idx]
            g_out = (1 / (1 + np.exp(-(oc + lc @ p["a"] - orr - lr @ p["a"]))) - 1) / len(idx)
            g_pen = corr_penalty_grad(np.concatenate([oc, orr]), np.concatenate([len_c[idx], len_r[idx]]), lam)
            gc = T.grads(p, qc_all[idx], cc, g_out + g_pen[:len(idx)])
            gr = T.grads(p, qr_all[idx], cr, -g_out + g_pen[len(idx):])
            t += 1
            for k in p:
                g = (lc - lr).T @ g_out if k == "a" else gc[k] + gr[k]
                m[k] = 0.9 * m[k] + 0.1 * g
                s[k] = 0.999 * s[k] + 0.001 * g * g
                step = LR * (m[k] / (1 - 0.9 ** t)) / (np.sqrt(s[k] / (1 - 0.999 ** t)) + 1e-8)
                p[k] = p[k] - step - LR * 0.3 * p[k]
        if epoch >= EPOCHS // 3:
            n_avg += 1
            for k in p:
                avg[k] += (p[k] - avg[k]) / n_avg
    avg["v"][LENGTH] = 0
    avg["W1"][:, LENGTH] = 0
    return avg


def full_length(tokenizer_path, pairs):
    """log(1 + response tokens) of the whole response (no window)."""
    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(str(tokenizer_path))
    tok.no_padding()
    tok.no_truncation()
    return np.log1p([len(e.ids) for e in tok.encode_batch([r for _, r in pairs], add_special_tokens=False)])


def validation(score_of, d):
    """Accuracies on the held-out split's subsets and the loops, from a function of (prompt, response) pairs."""
    named = dict(T.subsets(d.val))
    named["reference vs its own loop"] = d.val_loops
    out = {}
    for name, rows in named.items():
        c, r = D.sides(rows)
        out[name] = round(T.accuracy(score_of(c), score_of(r)), 3)
    out["best_of_4_beats_reference"] = T.best_of_n(
        d.val, D.reference_answers(d.rows), lambda prompt, answers: score_of([(prompt, a) for a in answers]))[
        "reward_model"]
    return out


def length_split(d):
    full_c, full_r = (full_length(d.backbone_dir / "tokenizer.json", side) for side in D.sides(d.fit_rows))
    both = np.concatenate([full_c, full_r])
    len_c, len_r = (full_c - both.mean()) / both.std(), (full_r - both.mean()) / both.std()
    gens = sorted({r["source"] for r in d.train_rows})
    prompts = sorted({r["prompt"] for r in d.train_rows})
    matched = np.array([D.length_matched(r) for r in d.fit_rows])
    shorter = np.array([len(r["chosen"]) < len(r["rejected"]) for r in d.fit_rows])
    out = {}
    for lam in LAMBDA:
        won, inner_matched, inner_shorter = [], [], []
        for fold in range(2):
            inner_gens, inner_prompts = set(gens[fold::4]), set(prompts[fold::4])
            gen_in = np.array([r["source"] in inner_gens for r in d.train_rows] + [False] * len(d.train_loops))
            prompt_in = np.array([r["prompt"] in inner_prompts for r in d.fit_rows])
            inner, fitted = gen_in & prompt_in, ~gen_in & ~prompt_in
            p = fit_split(d.zc[fitted], d.zr[fitted], len_c[fitted], len_r[fitted], lam)
            won += list((T.reward(p, d.zc) > T.reward(p, d.zr))[inner])
            inner_matched += list(matched[inner])
            inner_shorter += list(shorter[inner])
        won, inner_matched, inner_shorter = map(np.array, (won, inner_matched, inner_shorter))
        p = fit_split(d.zc, d.zr, len_c, len_r, lam)
        out[str(lam)] = {
            "inner": {"pairs": len(won), "all": round(won.mean(), 3),
                      "length-matched": round(won[inner_matched].mean(), 3),
                      "shorter answer preferred": round(won[inner_shorter].mean(), 3)},
            "validation": validation(lambda pairs: T.reward(p, (d.store.get(pairs) - d.mu) / d.sd), d),
        }
        print(f"  length split, lambda {lam}: {out[str(lam)]}", file=sys.stderr, flush=True)
    return out


def backbone_cost(backbone, depth):
    """Median seconds of the backbone cut after LAYERS[depth - 1], 8 x 256 tokens, 2 threads."""
    import onnx
    import onnxruntime as ort
    cut = backbone.with_name(f"cut-{depth}.onnx")
    onnx.utils.extract_model(str(backbone), str(cut), ["input_ids", "attention_mask", "token_type_ids"],
                             [F.LAYERS[depth - 1]])
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    session = ort.InferenceSession(str(cut), options, providers=["CPUExecutionProvider"])
    ids = np.random.default_rng(0).integers(1000, 29000, (8, F.MAX_TOKENS)).astype(np.int64)
    types = np.zeros_like(ids)
    types[:, 40:] = 1
    feed = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": types}
    session.run(None, feed)
    runs = []
    for _ in range(10):
        start = time.perf_counter()
        session.run(None, feed)
        runs.append(time.perf_counter() - start)
    cut.unlink()
    return float(np.median(runs))


def depth(d):
    out = {}
    for k in range(1, len(F.LAYERS) + 1):
        cols = np.concatenate([np.arange(0, k * 3 * F.HIDDEN), np.arange(F.N_FEATURES - F.N_SCALARS, F.N_FEATURES)])
        p = T.fit(d.zc[:, cols], d.zr[:, cols], 128, 0.3)
        acc = validation(lambda pairs: T.reward(p, ((d.store.get(pairs) - d.mu) / d.sd)[:, cols]), d)
        out[F.LAYERS[k - 1]] = {"backbone_ms_8x256": round(1e3 * backbone_cost(d.backbone_dir / "model.onnx", k), 1),
                                "validation": acc}
        print(f"  depth {k}: {out[F.LAYERS[k - 1]]}", file=sys.stderr, flush=True)
    return out


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    data = T.prepare(pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2]), 10**9)
    print(json.dumps({"length_split": length_split(data), "depth": depth(data)}, indent=1))
