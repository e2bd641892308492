"""Writes checkable.jsonl: 300 questions with reference answers for `bon-proxy eval` (accuracy per strategy).

Arithmetic and one-step word problems that SmolLM2-135M-Instruct answers right some of the time: 75 each of
two-digit addition, two-digit subtraction (never negative), one-digit times two-digit multiplication, and word
problems (add or take away, small numbers). Each asks for the number, so `--answer auto` (the last number) reads the
answer. Deterministic (seeded), so the file can be regenerated and compared: python3 make_checkable.py > checkable.jsonl
"""

import json
import random

rng = random.Random(20261130)
NAMES = ["Tom", "Ana", "Li", "Sara", "Omar", "Mia", "Ravi", "Emma", "Kofi", "Yuki"]
THINGS = ["apples", "books", "marbles", "pencils", "stickers", "cookies", "coins", "shells"]
SUFFIX = " Answer with the number."


def line(prompt, answer, kind):
    return json.dumps({"prompt": prompt + SUFFIX, "answer": answer, "kind": kind})


out = []
for _ in range(75):
    a, b = rng.randint(10, 99), rng.randint(10, 99)
    out.append(line(f"What is {a} plus {b}?", a + b, "add"))
for _ in range(75):
    a, b = sorted((rng.randint(10, 99), rng.randint(10, 99)), reverse=True)
    out.append(line(f"What is {a} minus {b}?", a - b, "subtract"))
for _ in range(75):
    a, b = rng.randint(2, 9), rng.randint(11, 99)
    out.append(line(f"What is {b} times {a}?", a * b, "multiply"))
for _ in range(75):
    name, thing = rng.choice(NAMES), rng.choice(THINGS)
    a, b = rng.randint(3, 20), rng.randint(2, 12)
    if rng.random() < 0.5:
        q = f"{name} has {a} {thing} and gets {b} more. How many {thing} does {name} have now?"
        out.append(line(q, a + b, "word-add"))
    else:
        a = a + b
        q = f"{name} has {a} {thing} and gives away {b}. How many {thing} does {name} have left?"
        out.append(line(q, a - b, "word-subtract"))
print("\n".join(out))
