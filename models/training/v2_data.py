"""Data and backbone features for the v2 default reward model (used by train_default.py).

Split, held out by generator AND by prompt (stricter than v1's split, which held out generators only, so an answer
judged in validation could share its prompt and its reference answer with training pairs):
- prompts: the first 100 of ../shared/data/prompts/alpaca_eval_805.jsonl (the ones the README's `eval` report uses)
  and every 5th after them are held out (241 of 805);
- generators: every 5th of the 50 in sorted order is held out (10), as in v1.
Training pairs: training generators x training prompts. Validation pairs: held-out generators x held-out prompts.
Pairs that mix a held-out side with a training side are used by neither.

Synthetic loops (training prompts only, and separately for validation on held-out prompts): an answer, then one of
its phrases repeated until the text is twice as long, the way a sampled LLM answer loops until the length limit.
"""

import gzip
import hashlib
import json
import pathlib
import sys
import time

import numpy as np

sys.path[:0] = [str(pathlib.Path(__file__).resolve().parent.parent / d) for d in ("assembly",)]  # models/<role>/ siblings

import default_features as F

HERE = pathlib.Path(__file__).resolve().parent
SHARED = HERE.parent.parent.parent / "shared" / "data"
PAIRS = SHARED / "preferences" / "train.jsonl.gz"
PROMPTS = SHARED / "prompts" / "alpaca_eval_805.jsonl"
REFERENCE_GENERATOR = "gpt4_1106_preview"


def held_out_prompts():
    prompts = [json.loads(line)["prompt"] for line in open(PROMPTS)]
    return {p for i, p in enumerate(prompts) if i < 100 or i % 5 == 0}


def split():
    rows = [json.loads(line) for line in gzip.open(PAIRS, "rt")]
    sources = sorted({r["source"] for r in rows})
    held_gen = set(sources[::5])
    held_prompt = held_out_prompts()
    train = [r for r in rows if r["source"] not in held_gen and r["prompt"] not in held_prompt]
    val = [r for r in rows if r["source"] in held_gen and r["prompt"] in held_prompt]
    return rows, train, val, sorted(held_gen)


def reference_answers(rows):
    """prompt -> the reference (gpt4_1106_preview) answer: the text every pair of that prompt shares."""
    seen = {}
    for r in rows:
        for side in ("chosen", "rejected"):
            seen.setdefault(r["prompt"], {}).setdefault(r[side], set()).add(r["source"])
    return {p: max(texts, key=lambda t: len(texts[t])) for p, texts in seen.items()}


def make_loop(text, rng):
    """`text` cut after a phrase, then that phrase repeated until the whole is about twice as long."""
    words = text.split()
    if len(words) < 12:
        return None
    start = int(rng.integers(0, max(1, len(words) // 2)))
    length = int(rng.integers(3, 13))
    phrase = " ".join(words[start:start + length])
    out = " ".join(words[:start + length])
    sep = rng.choice([", ", " ", ". ", "\n"])
    while len(out) < 2 * len(text):
        out += sep + phrase
    return out


def loop_pairs(rows, prompts, rng, per_prompt=2):
    """(prompt, reference answer) chosen over its looped version, plus a generator's answer over its loop."""
    refs = reference_answers(rows)
    by_prompt = {}
    for r in rows:
        if r["prompt"] in prompts:
            by_prompt.setdefault(r["prompt"], []).append(r)
    out = []
    for p in sorted(prompts):
        if p not in refs:
            continue
        texts = [refs[p]] + [r["chosen"] if r["chosen"] != refs[p] else r["rejected"] for r in by_prompt.get(p, [])]
        picks = [texts[0]] + [texts[i] for i in rng.choice(len(texts), size=min(per_prompt - 1, len(texts)),
                                                           replace=False)]
        for t in picks:
            loop = make_loop(t, rng)
            if loop:
                out.append({"prompt": p, "chosen": t, "rejected": loop, "source": "synthetic:loop"})
    return out


def off_topic_pairs(rows, prompts, rng):
    """Longer but worse, by construction (after RRM, Liu et al. 2024): per prompt, an answer to it chosen over
    (a) a longer answer to another prompt and (b) the same answer with a passage of another prompt's answer appended.
    Both rejected sides are longer, so length alone gets every such pair wrong."""
    by_prompt = {}
    for r in rows:
        if r["prompt"] in prompts:
            for side in ("chosen", "rejected"):
                by_prompt.setdefault(r["prompt"], set()).add(r[side])
    ordered = sorted(by_prompt)
    texts = {p: sorted(by_prompt[p]) for p in ordered}
    out = []
    for p in ordered:
        answer = texts[p][int(rng.integers(len(texts[p])))]
        others = [o for o in ordered if o != p]
        for _ in range(20):
            other = texts[others[int(rng.integers(len(others)))]]
            longer = [t for t in other if len(t) > len(answer)]
            if longer:
                out.append({"prompt": p, "chosen": answer, "rejected": longer[int(rng.integers(len(longer)))],
                            "source": "synthetic:off-topic"})
                break
        words = other[int(rng.integers(len(other)))].split()
        take = max(8, len(answer.split()) // 2)
        start = int(rng.integers(0, max(1, len(words) - take)))
        out.append({"prompt": p, "chosen": answer, "rejected": answer + "\n\n" + " ".join(words[start:start + take]),
                    "source": "synthetic:appended"})
    return out


def length_matched(r):
    a, b = len(r["chosen"]), len(r["rejected"])
    return max(a, b) <= 1.5 * max(1, min(a, b))


def key(prompt, response):
    return hashlib.blake2b((prompt + "\0" + response).encode(), digest_size=16).hexdigest()


def pair_tokenizer(path, max_tokens):
    """bon-proxy's pair encoding: the BERT pair post-processor, no padding, truncated to `max_tokens` from the left,
    longest part first."""
    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(str(path))
    tok.no_padding()
    tok.enable_truncation(max_length=max_tokens, strategy="longest_first", direction="left")
    return tok


class Backbone:
    """The int8 backbone with the spec's layers as outputs (cut after the last of them), and bon-proxy's pair
    encoding with the spec's window."""

    def __init__(self, onnx_path, tokenizer_path, threads=2, spec=F.DEFAULT):
        import onnx
        import onnxruntime as ort
        from onnx import TensorProto, helper

        self.spec = spec
        model = onnx.load(str(onnx_path))
        if spec.layers[-1] != F.LAYERS[-1]:
            model = onnx.utils.Extractor(model).extract_model([i.name for i in model.graph.input], spec.layers)
        else:
            for name in spec.layers[:-1]:
                model.graph.output.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, None))
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        self.tok = pair_tokenizer(tokenizer_path, spec.max_tokens)

    def batches(self, pairs, size=16):
        yield from padded_feeds([self.tok.encode(p, r) for p, r in pairs], size)

    def features(self, pairs):
        out = np.zeros((len(pairs), F.n_features(self.spec)), np.float32)
        for chunk, feed in self.batches(pairs):
            hidden = self.session.run(list(self.spec.layers), feed)
            out[chunk] = F.features_numpy(hidden, feed["input_ids"], feed["attention_mask"], feed["token_type_ids"],
                                          self.spec)
        return out


class FeatureStore:
    """Features per unique (prompt, response), computed once and kept in WORK/features-*.npz chunks."""

    def __init__(self, work, backbone):
        self.work, self.backbone = pathlib.Path(work), backbone
        self.index, self.arrays = {}, []
        for path in sorted(self.work.glob("features-*.npz")):
            z = np.load(path)
            base = sum(len(a) for a in self.arrays)
            for i, k in enumerate(z["keys"]):
                self.index[str(k)] = base + i
            self.arrays.append(z["x"])

    def ensure(self, pairs, chunk=1024):
        todo = list({key(p, r): (p, r) for p, r in pairs if key(p, r) not in self.index}.items())
        started = time.time()
        for s in range(0, len(todo), chunk):
            part = todo[s:s + chunk]
            x = self.backbone.features([pr for _, pr in part]).astype(np.float16)
            # Numbered after the files on disk, not len(self.arrays): get() merges the arrays into one, and a number
            # from their count overwrote earlier chunks.
            taken = [int(f.stem.split("-")[1]) for f in self.work.glob("features-[0-9]*.npz")]
            path = self.work / f"features-{max(taken, default=-1) + 1:04d}.npz"
            np.savez(path, keys=np.array([k for k, _ in part]), x=x)
            base = sum(len(a) for a in self.arrays)
            for i, (k, _) in enumerate(part):
                self.index[k] = base + i
            self.arrays.append(x)
            done = s + len(part)
            rate = done / (time.time() - started)
            print(f"  features: {done}/{len(todo)} new sequences, {rate:.1f}/s", file=sys.stderr, flush=True)

    def get(self, pairs):
        all_x = np.concatenate(self.arrays) if len(self.arrays) > 1 else self.arrays[0]
        self.arrays = [all_x]
        return all_x[[self.index[key(p, r)] for p, r in pairs]].astype(np.float32)


def padded_feeds(encodings, size):
    """(indices, graph inputs) of `encodings` in chunks of `size`, shortest first, right-padded with 0."""
    order = np.argsort([len(e.ids) for e in encodings], kind="stable")
    for start in range(0, len(order), size):
        chunk = order[start:start + size]
        width = max(len(encodings[i].ids) for i in chunk)
        ids = np.zeros((len(chunk), width), np.int64)
        mask, types = np.zeros_like(ids), np.zeros_like(ids)
        for j, i in enumerate(chunk):
            e = encodings[i]
            ids[j, :len(e.ids)], mask[j, :len(e.ids)], types[j, :len(e.ids)] = e.ids, 1, e.type_ids
        yield chunk, {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}


class Cutter:
    """The first `n` response tokens of a text under the backbone's tokenizer (no special tokens), as text."""

    def __init__(self, tokenizer_path):
        from tokenizers import Tokenizer
        self.tok = Tokenizer.from_file(str(tokenizer_path))
        self.tok.no_truncation()
        self.tok.no_padding()
        self.offsets = {}

    def ends(self, text):
        """Where each token of `text` ends (character offsets)."""
        if text not in self.offsets:
            self.offsets[text] = [end for _, end in self.tok.encode(text, add_special_tokens=False).offsets]
        return self.offsets[text]

    def tokens(self, text):
        return len(self.ends(text))

    def __call__(self, text, n):
        ends = self.ends(text)
        return text if len(ends) <= n else text[:ends[n - 1]]


def sides(rows):
    return [(r["prompt"], r["chosen"]) for r in rows], [(r["prompt"], r["rejected"]) for r in rows]


def all_sequences(rows_lists):
    """Both sides of every pair, pair by pair (so a partial feature cache holds whole pairs)."""
    return [(r["prompt"], r[side]) for rows in rows_lists for r in rows for side in ("chosen", "rejected")]


if __name__ == "__main__":
    # Feature cache warm-up: python models/training/v2_data.py BACKBONE.onnx TOKENIZER.json WORK
    onnx_path, tok_path, work = sys.argv[1:4]
    pathlib.Path(work).mkdir(parents=True, exist_ok=True)
    rows, train, val, _ = split()
    rng = np.random.default_rng(0)
    held = held_out_prompts()
    val_loops = loop_pairs(rows, held, np.random.default_rng(1))
    train_loops = loop_pairs(rows, {r["prompt"] for r in train}, rng)
    store = FeatureStore(work, Backbone(onnx_path, tok_path))
    order = np.random.default_rng(2).permutation(len(train))
    store.ensure(all_sequences([val, val_loops, train_loops]))
    store.ensure(all_sequences([[train[i] for i in order]]))
