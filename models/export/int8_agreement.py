#!/usr/bin/env python3
"""How much int8 changes a reward model's decisions: scores (prompt, chosen) and (prompt, rejected) pairs from
../shared/data/preferences with an fp32 export and its `--quantize int8` twin (same tokenizer and template), one
sequence per run, and reports how often the two agree on which answer of a pair is better, the rank correlation of
all scores, and the largest score difference relative to the fp32 scores' spread.

    python models/export/int8_agreement.py FP32_DIR INT8_DIR [--pairs 100] [--max-tokens 512]

With random weights (models/research/make_shaped.py) this measures numerical fidelity only; with real weights, decisions.
"""

import argparse
import gzip
import json
import pathlib

import numpy as np
import onnxruntime as ort
from transformers import AutoTokenizer

DATA = pathlib.Path(__file__).resolve().parent.parent.parent.parent / "shared" / "data" / "preferences" / "train.jsonl.gz"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("fp32", type=pathlib.Path)
    ap.add_argument("int8", type=pathlib.Path)
    ap.add_argument("--pairs", type=int, default=100)
    ap.add_argument("--max-tokens", type=int, default=512)
    args = ap.parse_args()
    tokenizer = AutoTokenizer.from_pretrained(str(args.fp32))
    with gzip.open(DATA, "rt") as f:
        rows = [json.loads(line) for _, line in zip(range(args.pairs), f)]
    seqs = []
    for row in rows:
        for answer in (row["chosen"], row["rejected"]):
            conversation = [{"role": "user", "content": row["prompt"]}, {"role": "assistant", "content": answer}]
            ids = tokenizer.apply_chat_template(conversation, tokenize=True, return_dict=True)["input_ids"]
            seqs.append(ids[-args.max_tokens:])
    scores = {}
    for name, d in (("fp32", args.fp32), ("int8", args.int8)):
        session = ort.InferenceSession(str(d / "model.onnx"), providers=["CPUExecutionProvider"])
        scores[name] = np.array([session.run(["logits"], {"input_ids": np.array([s], dtype=np.int64),
                                                          "attention_mask": np.ones((1, len(s)), dtype=np.int64)})[0][0, 0]
                                 for s in seqs])
    a, b = scores["fp32"], scores["int8"]
    agree = np.mean(np.sign(a[0::2] - a[1::2]) == np.sign(b[0::2] - b[1::2]))
    rank = np.corrcoef(np.argsort(np.argsort(a)), np.argsort(np.argsort(b)))[0, 1]
    lengths = [len(s) for s in seqs]
    print(json.dumps({"pairs": len(rows), "tokens_mean": float(np.mean(lengths)), "pair_agreement": float(agree),
                      "spearman": float(rank), "max_abs_diff": float(np.max(np.abs(a - b))),
                      "max_diff_over_spread": float(np.max(np.abs(a - b)) / (a.max() - a.min()))}))


if __name__ == "__main__":
    main()
