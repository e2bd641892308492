#!/usr/bin/env python3
"""Exports a Hugging Face `*ForSequenceClassification` reward model to the directory layout bon-proxy loads,
and refuses to write a model whose ONNX scores or ranking disagree with transformers.

    python models/export.py SOURCE OUT_DIR [--dtype fp32|fp16] [--revision REV]
    python models/export.py --preset skywork-v2-0.6b            (writes models/exports/skywork-v2-0.6b)

SOURCE is a hub id (Skywork/Skywork-Reward-V2-Qwen3-0.6B) or a local directory saved by `save_pretrained`.
Writes model.onnx (with external data beside it when the weights pass 2 GB), tokenizer.json,
tokenizer_config.json (the chat template inside it), config.json. The parity check scores a handful of
conversations (single turn, multi-turn, system message, tool call) with transformers and with ONNX Runtime on the
same input ids, alone and as one right-padded batch; it fails on a score difference over the tolerance or on a
different ranking. Needs torch, transformers, onnx, onnxscript, onnxruntime.
"""

import argparse
import json
import pathlib
import shutil
import sys
import tempfile

import numpy as np
import onnxruntime as ort
import torch
from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

HERE = pathlib.Path(__file__).resolve().parent
PRESETS = {
    "skywork-v2-0.6b": "Skywork/Skywork-Reward-V2-Qwen3-0.6B",
    "skywork-v2-1.7b": "Skywork/Skywork-Reward-V2-Qwen3-1.7B",
    "skywork-v2-llama-8b": "Skywork/Skywork-Reward-V2-Llama-3.1-8B",
}
TWO_GB = 2 * 1024**3

PARITY_CONVERSATIONS = [
    [{"role": "user", "content": "What is 2 + 2?"}, {"role": "assistant", "content": "2 + 2 = 4."}],
    [{"role": "user", "content": "What is 2 + 2?"}, {"role": "assistant", "content": "It is 5, I am quite sure."}],
    [
        {"role": "user", "content": "Give me a word that rhymes with cat."},
        {"role": "assistant", "content": "Hat."},
        {"role": "user", "content": "Another one, please."},
        {"role": "assistant", "content": "Bat, as in the animal that flies at night."},
    ],
    [
        {"role": "system", "content": "Answer in French."},
        {"role": "user", "content": "Good morning!"},
        {"role": "assistant", "content": "Bonjour !"},
    ],
    [
        {"role": "user", "content": "What's the weather in Paris?"},
        {"role": "assistant", "content": "", "tool_calls": [{"type": "function", "function": {
            "name": "get_weather", "arguments": {"city": "Paris"}}}]},
    ],
]


class LogitsOnly(torch.nn.Module):
    """Named inputs in, `logits` out, no KV cache: the graph contract bon-proxy expects."""

    def __init__(self, model, names):
        super().__init__()
        self.model, self.names = model, names

    def forward(self, *args):
        return self.model(**dict(zip(self.names, args)), use_cache=False).logits


def encode(tokenizer, conversation):
    if tokenizer.chat_template:
        return tokenizer.apply_chat_template(conversation, tokenize=True, return_dict=True)["input_ids"]
    user = [m["content"] for m in conversation if m["role"] == "user"][-1]
    return tokenizer(user, conversation[-1]["content"])["input_ids"]


def input_names(model):
    import inspect

    params = inspect.signature(model.forward).parameters
    return [n for n in ("input_ids", "attention_mask", "token_type_ids") if n in params]


def export(source, out, dtype="fp32", revision=None, tolerance=None):
    tokenizer = AutoTokenizer.from_pretrained(source, revision=revision)
    config = AutoConfig.from_pretrained(source, revision=revision)
    if config.pad_token_id is None:
        config.pad_token_id = tokenizer.pad_token_id
    torch_dtype = torch.float16 if dtype == "fp16" else torch.float32
    model = AutoModelForSequenceClassification.from_pretrained(source, config=config, revision=revision,
                                                               torch_dtype=torch.float32).eval()
    names = input_names(model)
    ids = [encode(tokenizer, c) for c in PARITY_CONVERSATIONS]
    with torch.no_grad():
        reference = [model(input_ids=torch.tensor([i])).logits[0, 0].item() for i in ids]

    size = sum(p.numel() * p.element_size() for p in model.parameters()) // (2 if dtype == "fp16" else 1)
    export_model = model.to(torch_dtype) if dtype == "fp16" else model
    example_ids = torch.tensor([ids[0], ids[0]])
    example = {"input_ids": example_ids, "attention_mask": torch.ones_like(example_ids),
               "token_type_ids": torch.zeros_like(example_ids)}
    batch, seq = torch.export.Dim("batch"), torch.export.Dim("sequence")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        external = size > TWO_GB
        program = torch.onnx.export(
            LogitsOnly(export_model, names), tuple(example[n] for n in names), input_names=names,
            output_names=["logits"], dynamic_shapes=(tuple({0: batch, 1: seq} for _ in names),),
            opset_version=18, dynamo=True, external_data=external,
        )
        program.save(str(tmp / "model.onnx"), external_data=external)
        if dtype == "fp16":
            cast_output_to_float32(tmp / "model.onnx", external)
        tol = tolerance or (1e-4 if dtype == "fp32" else 2e-2)
        check_parity(tmp / "model.onnx", names, ids, reference, config.pad_token_id, tol)
        out.mkdir(parents=True, exist_ok=True)
        for f in tmp.iterdir():
            shutil.copy(f, out / f.name)
    tokenizer.save_pretrained(str(out))
    move_template_into_config(out)
    config.save_pretrained(str(out))
    for extra in ["special_tokens_map.json", "generation_config.json", "vocab.json", "merges.txt"]:
        (out / extra).unlink(missing_ok=True)
    print(f"exported {source} -> {out} ({dtype}); parity scores {np.round(reference, 4).tolist()}")
    return reference


def cast_output_to_float32(path, external):
    """bon-proxy reads float32 rewards: append a Cast on the fp16 logits."""
    import onnx
    from onnx import TensorProto, helper

    model = onnx.load(str(path))
    out = model.graph.output[0]
    out.name, old = "logits", out.name
    for node in model.graph.node:
        node.output[:] = [("logits_fp16" if o == old else o) for o in node.output]
    model.graph.node.append(helper.make_node("Cast", ["logits_fp16"], ["logits"], to=TensorProto.FLOAT))
    out.type.tensor_type.elem_type = TensorProto.FLOAT
    onnx.save(model, str(path), save_as_external_data=external, location="model.onnx_data")


def check_parity(path, names, ids, reference, pad_id, tol):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])

    def feed(rows):
        width = max(len(r) for r in rows)
        input_ids = np.array([r + [pad_id] * (width - len(r)) for r in rows], dtype=np.int64)
        mask = np.array([[1] * len(r) + [0] * (width - len(r)) for r in rows], dtype=np.int64)
        f = {"input_ids": input_ids, "attention_mask": mask, "token_type_ids": np.zeros_like(input_ids)}
        return {n: f[n] for n in names}

    alone = [float(session.run(["logits"], feed([i]))[0][0, 0]) for i in ids]
    batched = [float(s) for s in session.run(["logits"], feed(ids))[0][:, 0]]
    for name, got in (("alone", alone), ("padded batch", batched)):
        worst = max(abs(a - b) for a, b in zip(got, reference))
        if worst > tol:
            sys.exit(f"parity check failed ({name}): ONNX {got} vs transformers {reference} (max diff {worst:.2e})")
        if np.argsort(got).tolist() != np.argsort(reference).tolist():
            sys.exit(f"parity check failed ({name}): ranking differs: ONNX {got} vs transformers {reference}")


def move_template_into_config(d):
    """Newer transformers write chat_template.jinja; keep the template inside tokenizer_config.json too."""
    jinja = d / "chat_template.jinja"
    if jinja.exists():
        cfg = json.loads((d / "tokenizer_config.json").read_text())
        cfg["chat_template"] = jinja.read_text()
        (d / "tokenizer_config.json").write_text(json.dumps(cfg, indent=2, ensure_ascii=False) + "\n")
        jinja.unlink()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("source", nargs="?")
    ap.add_argument("out", nargs="?", type=pathlib.Path)
    ap.add_argument("--preset", choices=sorted(PRESETS))
    ap.add_argument("--dtype", choices=["fp32", "fp16"], default="fp32")
    ap.add_argument("--revision")
    args = ap.parse_args()
    if args.preset:
        source, out = PRESETS[args.preset], args.out or HERE / "exports" / args.preset
    elif args.source and args.out:
        source, out = args.source, args.out
    else:
        ap.error("give SOURCE OUT_DIR, or --preset NAME")
    export(source, out, args.dtype, args.revision)


if __name__ == "__main__":
    main()
