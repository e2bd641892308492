#!/usr/bin/env python3
"""Samples a weak upstream's own answers for the prefix head to learn from (on-policy data; train_prefix.py --policy).

The shipped prefix head learnt from AlpacaEval generators' answers (7B to GPT-4 class); on SmolLM2-135M's answers its
gain does not carry over (README, "Benchmarks"). This collects N answers per prompt from an OpenAI-compatible
upstream with the prune bench's sampling settings (temperature 0.8, max_tokens 256, one request with `n = N`: what
llama-server does for the proxy with --upstream-n native), for:

- training: the training prompts of v2_data's split (index >= 100 and not a multiple of 5), in order;
- validation: held-out prompts 50..99 (held out from every head, and not the prune bench's first 50).

Resumable: prompts already in OUT are skipped, each answer set is appended and flushed as it arrives.

Run: python models/training/policy_samples.py URL MODEL OUT.jsonl {train|val} COUNT
"""

import gzip
import json
import pathlib
import sys
import urllib.request

sys.path[:0] = [str(pathlib.Path(__file__).resolve().parent)]

import v2_data as D

N, TEMPERATURE, MAX_TOKENS = 8, 0.8, 256


def read_samples(path):
    """The lines of a samples file (OUT, or OUT gzipped): {"index", "prompt", "samples", "finish"} each."""
    with (gzip.open(path, "rt") if str(path).endswith(".gz") else open(path)) as f:
        return [json.loads(line) for line in f]


def prompts(which):
    rows = [json.loads(line)["prompt"] for line in open(D.PROMPTS)]
    if which == "train":
        return [(i, p) for i, p in enumerate(rows) if i >= 100 and i % 5 != 0]
    return [(i, p) for i, p in enumerate(rows) if 50 <= i < 100]


def sample(url, model, index, prompt):
    body = {"model": model, "messages": [{"role": "user", "content": prompt}], "n": N, "seed": 10_000 + 64 * index,
            "temperature": TEMPERATURE, "max_tokens": MAX_TOKENS}
    req = urllib.request.Request(f"{url}/v1/chat/completions", json.dumps(body).encode(),
                                 {"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=600) as resp:
        out = json.load(resp)
    choices = sorted(out["choices"], key=lambda c: c["index"])
    return [c["message"]["content"] for c in choices], [c["finish_reason"] for c in choices]


def main(url, model, out, which, count):
    done = set()
    if out.exists():
        done = {s["index"] for s in read_samples(out)}
    todo = [(i, p) for i, p in prompts(which)[:count] if i not in done]
    with out.open("a") as f:
        for k, (i, p) in enumerate(todo):
            texts, reasons = sample(url, model, i, p)
            if len(texts) != N:
                sys.exit(f"prompt {i}: {len(texts)} choices, not {N}: the upstream must honour `n`")
            f.write(json.dumps({"index": i, "prompt": p, "samples": texts, "finish": reasons}) + "\n")
            f.flush()
            print(f"{which} {k + 1}/{len(todo)} (prompt {i})", file=sys.stderr)


if __name__ == "__main__":
    if len(sys.argv) != 6 or sys.argv[4] not in ("train", "val"):
        sys.exit(__doc__)
    main(sys.argv[1].rstrip("/"), sys.argv[2], pathlib.Path(sys.argv[3]), sys.argv[4], int(sys.argv[5]))
