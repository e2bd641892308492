#!/usr/bin/env python3
"""Two reward models on the same real samples: the `results.json` of a `bon-proxy eval` run (every sample's text,
flags, and the judge's rating when judged) rescored by model A and model B, each picking the best of a prompt's
samples the way the proxy does (unflagged before flagged, then by score).

Prints how often they pick the same sample, the words and guard flags of their picks, the judge's mean rating of
their picks (when rated), and how alike they rank a prompt's samples (mean Spearman). Also checks that model A's
scores reproduce the rewards in results.json when A is the model that run used. And, for each model, how many of the
12 real SmolLM2 loops of tests/fixtures/loops.json it alone (no guard) would pick over three coherent answers, the
Best-of-4 calls tests/guard.rs makes.

Run: python models/research/compare_picks.py RESULTS_JSON MODEL_DIR_A MODEL_DIR_B   (numpy, onnxruntime, tokenizers)
"""

import json
import pathlib
import sys

import numpy as np

sys.path[:0] = [str(pathlib.Path(__file__).resolve().parent.parent / d) for d in ("assembly", "training")]  # models/<role>/ siblings

import default_reference


def scorer(model):
    score = default_reference.scorer(pathlib.Path(model))
    return lambda prompt, response: score(prompt, response)[1]


def main(results, model_a, model_b):
    prompts = json.load(open(results))["prompts"]
    a, b = scorer(model_a), scorer(model_b)
    same, rho, reproduced = 0, [], 0.0
    picks = {"A": [], "B": []}
    for p in prompts:
        prompt = p["messages"][-1]["content"]
        samples = [s for s in p["samples"] if s["error"] is None]
        if len(samples) < 2:
            continue
        sa = [a(prompt, s["text"]) for s in samples]
        sb = [b(prompt, s["text"]) for s in samples]
        reproduced = max(reproduced, max(abs(x - s["reward"]) for x, s in zip(sa, samples)))

        def pick(scores):
            return max(range(len(samples)), key=lambda i: (not samples[i]["flags"], scores[i]))
        ia, ib = pick(sa), pick(sb)
        same += ia == ib
        picks["A"].append(samples[ia])
        picks["B"].append(samples[ib])
        rho.append(np.corrcoef(np.argsort(np.argsort(sa)), np.argsort(np.argsort(sb)))[0, 1])
    out = {"prompts": len(picks["A"]), "same_pick": same, "mean_spearman": round(float(np.nanmean(rho)), 3),
           "model_a_vs_results_json_max_diff": reproduced}
    for k, chosen in picks.items():
        ratings = [s["rating"] for s in chosen if s.get("rating") is not None]
        out[k] = {"words": round(float(np.mean([s["words"] for s in chosen])), 1),
                  "flagged": sum(bool(s["flags"]) for s in chosen),
                  "judge_rating": round(float(np.mean(ratings)), 3) if ratings else None}
    for k, score in (("A", a), ("B", b)):
        out[k]["unguarded_loop_wins"] = loop_wins(score)
    print(json.dumps(out, indent=1))


def loop_wins(score):
    """Of tests/guard.rs's calls (loop i against coherent answers i+1..i+3, all to loop i's prompt), how many the
    loop wins on score alone."""
    fixture = json.loads((pathlib.Path(__file__).resolve().parent.parent.parent / "tests/fixtures/loops.json").read_text())
    loops, coherent = fixture["loops"], fixture["coherent"]
    wins = 0
    for i, loop in enumerate(loops):
        others = [coherent[(i + k) % len(coherent)]["text"] for k in range(1, 4)]
        wins += score(loop["prompt"], loop["text"]) > max(score(loop["prompt"], t) for t in others)
    return int(wins)


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    main(*sys.argv[1:])
