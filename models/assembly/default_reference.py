#!/usr/bin/env python3
"""Reference scores of the assembled default reward model (models/default, built by scripts/setup) and of the deep
model (models/default-deep) on held-out preference pairs (and answers against their own loops), computed with ONNX
Runtime's Python binding and HF tokenizers, independently of bon-proxy: default_reference.json and
deep_reference.json. tests/default_model.rs checks that bon-proxy encodes the same ids and computes the same
scores.
Run: python models/assembly/default_reference.py   (numpy, onnxruntime, tokenizers)
"""

import json
import pathlib

import numpy as np
import onnxruntime as ort

import sys
sys.path[:0] = [str(pathlib.Path(__file__).resolve().parent.parent / d) for d in ("training",)]  # models/<role>/ siblings

import v2_data

HERE = pathlib.Path(__file__).resolve().parent
PAIRS = 24
LOOPS = 6


def scorer(model, prefix=False):
    """(prompt, response) -> (input ids, score) of an assembled model directory, encoded as bon-proxy encodes it
    (pair, truncated from the left to the directory's model_max_length); `prefix`: the score of the output it scores
    partial answers with (its declared bon_prefix_output, else `logits`). Used by compare_picks.py too."""
    window = json.loads((model / "tokenizer_config.json").read_text())["model_max_length"]
    tok = v2_data.pair_tokenizer(model / "tokenizer.json", window)
    session = ort.InferenceSession(str(model / "model.onnx"), providers=["CPUExecutionProvider"])
    config = json.loads((model / "config.json").read_text())
    output = config.get("bon_prefix_output") or "logits" if prefix else "logits"

    def score(prompt, response):
        e = tok.encode(prompt, response)
        feed = {"input_ids": np.array([e.ids], np.int64), "attention_mask": np.ones((1, len(e.ids)), np.int64),
                "token_type_ids": np.array([e.type_ids], np.int64)}
        return e.ids, float(session.run([output], feed)[0][0, 0])
    return score


def main(model, out_path):
    rows, _, val, _ = v2_data.split()
    rng = np.random.default_rng(7)
    short = [r for r in val if v2_data.length_matched(r) and len(r["chosen"]) + len(r["prompt"]) < 1200]
    picked = [short[i] for i in sorted(rng.choice(len(short), PAIRS, replace=False))]
    # And a few answers against their own loop, so the parity test runs the loop-detecting part of the graph.
    loops = v2_data.loop_pairs(rows, v2_data.held_out_prompts(), np.random.default_rng(1))
    picked += [loops[i] for i in sorted(rng.choice(len(loops), LOOPS, replace=False))]
    score = scorer(model)
    config = json.loads((model / "config.json").read_text())
    # A model that declares how it scores partial answers (an output, or a calibration of its whole-answer output).
    declares = config.get("bon_prefix_output") or config.get("bon_prefix_calibration")
    prefix = scorer(model, prefix=True) if declares else None

    cases = []
    for r in picked:
        ids, chosen = score(r["prompt"], r["chosen"])
        _, rejected = score(r["prompt"], r["rejected"])
        cases.append({"source": r["source"], "prompt": r["prompt"], "chosen": r["chosen"], "rejected": r["rejected"],
                      "chosen_input_ids": ids, "chosen_score": chosen, "rejected_score": rejected})
        if prefix:
            # The first 32 words of each answer as a pruning round scores them.
            for side in ("chosen", "rejected"):
                text = " ".join(r[side].split(" ")[:32])
                cases[-1][f"{side}_prefix"] = text
                cases[-1][f"{side}_prefix_score"] = prefix(r["prompt"], text)[1]
    wins = sum(c["chosen_score"] > c["rejected_score"] for c in cases)
    out = {"model_id": json.loads((model / "config.json").read_text())["bon_model_id"], "chosen_wins": wins,
           "cases": cases}
    out_path.write_text(json.dumps(out, indent=1, ensure_ascii=False) + "\n")
    print(f"{model.name}: {wins}/{len(cases)} held-out pairs ranked right")


if __name__ == "__main__":
    main(HERE.parent / "default", HERE / "default_reference.json")
    main(HERE.parent / "default-deep", HERE / "deep_reference.json")
