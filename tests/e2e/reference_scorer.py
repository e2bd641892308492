"""An independent reward scorer for the end-to-end tests: the fixture's chat template rendered by Jinja2 exactly as
transformers' apply_chat_template does (trim_blocks, lstrip_blocks, loop controls), tokenized by HF tokenizers, and
run by ONNX Runtime's Python binding one sequence at a time (no padding). Nothing here shares code with bon-proxy."""

import json
import pathlib

import jinja2
import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer


class ReferenceScorer:
    def __init__(self, model_dir):
        d = pathlib.Path(model_dir)
        cfg = json.loads((d / "tokenizer_config.json").read_text())
        env = jinja2.Environment(trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"])
        env.filters["tojson"] = lambda x, indent=None: json.dumps(x, ensure_ascii=False, indent=indent)
        self.template = env.from_string(cfg["chat_template"])
        self.specials = {k: v for k, v in cfg.items() if k.endswith("_token") and isinstance(v, str)}
        self.tokenizer = Tokenizer.from_file(str(d / "tokenizer.json"))
        self.tokenizer.no_padding()
        self.tokenizer.no_truncation()
        self.session = ort.InferenceSession(str(d / "model.onnx"), providers=["CPUExecutionProvider"])

    def score(self, messages, response):
        conversation = list(messages) + [{"role": "assistant", "content": response}]
        text = self.template.render(messages=conversation, add_generation_prompt=False, tools=None, **self.specials)
        ids = self.tokenizer.encode(text, add_special_tokens=False).ids
        feed = {"input_ids": np.array([ids], dtype=np.int64), "attention_mask": np.ones((1, len(ids)), dtype=np.int64)}
        return float(self.session.run(["logits"], feed)[0][0, 0])


def guard_flags(text, finish_reason):
    """The degenerate-text guard's flags by its documented rule: `repetitive` when at least 40 % of the word 4-grams
    of the text's last 32 words (lower-cased, split on whitespace) occurred earlier among them and it has at least 24
    words, or at least 75 % and 12 to 23 words; `truncated` when the upstream stopped at the length limit."""
    words = text.lower().split()
    tail = words[-32:]
    grams = [tuple(tail[i:i + 4]) for i in range(len(tail) - 3)]
    repeated = len(grams) - len(set(grams)) if grams else 0
    threshold = 0.4 if len(words) >= 24 else 0.75 if len(words) >= 12 else None
    flags = []
    if threshold is not None and grams and repeated / len(grams) >= threshold:
        flags.append("repetitive")
    if finish_reason == "length":
        flags.append("truncated")
    return flags
