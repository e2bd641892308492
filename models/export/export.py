#!/usr/bin/env python3
"""Exports a Hugging Face `*ForSequenceClassification` reward model to the directory layout bon-proxy loads,
and refuses to write a model whose ONNX scores or ranking disagree with transformers.

    python models/export/export.py SOURCE OUT_DIR [--dtype fp32|fp16 | --quantize int8] [--tolerance T] [--revision REV]
    python models/export/export.py --preset skywork-v2-0.6b            (writes models/exports/skywork-v2-0.6b)

SOURCE is a hub id (Skywork/Skywork-Reward-V2-Qwen3-0.6B) or a local directory saved by `save_pretrained`.
Writes model.onnx (with model.onnx.data beside it when the weights pass 2 GB; only the files the graph references),
tokenizer.json, tokenizer_config.json (the chat template inside it), config.json. The parity check scores a handful of
conversations (single turn, multi-turn, system message, tool call) with transformers and with ONNX Runtime on the
same input ids, alone and as one right-padded batch; it fails on a score difference over the tolerance or on a
different ranking; with --quantize int8 the quantized graph is checked the same way, within a tenth of the largest
parity score's magnitude. Needs the packages pinned in models/export/requirements-export.txt.
"""

import argparse
import gc
import json
import os
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
# Largest score difference from transformers the export accepts (fp16 is compared with transformers in fp16, int8
# with fp32). The ranking of the parity conversations must match exactly in every case.
TOLERANCE = {"fp32": 1e-4, "fp16": 2e-2}
INT8_SHARE = 0.1


def int8_tolerance(reference):
    """int8: a tenth of the largest parity score's magnitude (reward scales differ from model to model). Dynamic
    quantisation may shift every score alike, which changes no selection; the strict ranking check is the real gate."""
    return max(INT8_SHARE * max(abs(r) for r in reference), 1e-3)

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


def export(source, out, dtype="fp32", revision=None, tolerance=None, quantize=None, external_data="auto"):
    """Exports SOURCE to OUT. Weights are loaded in the target dtype (fp16 export needs the fp16 size in RAM, not the
    fp32 one); `quantize="int8"` exports fp32, checks it, then quantizes it; `external_data` is "auto" (beyond 2 GB),
    "always" or "never"."""
    if quantize and dtype != "fp32":
        sys.exit("--quantize int8 starts from the fp32 export; leave --dtype at fp32")
    memory = Memory()
    tokenizer = AutoTokenizer.from_pretrained(source, revision=revision)
    config = AutoConfig.from_pretrained(source, revision=revision)
    if config.pad_token_id is None:
        config.pad_token_id = tokenizer.pad_token_id
    torch_dtype = torch.float16 if dtype == "fp16" else torch.float32
    model = AutoModelForSequenceClassification.from_pretrained(source, config=config, revision=revision,
                                                               dtype=torch_dtype).eval()
    names = input_names(model)
    ids = [encode(tokenizer, c) for c in PARITY_CONVERSATIONS]
    with torch.no_grad():
        reference = [model(input_ids=torch.tensor([i])).logits[0, 0].float().item() for i in ids]
    memory.mark("load")
    size = sum(p.numel() * p.element_size() for p in model.parameters())
    external = external_data == "always" or (external_data == "auto" and size > TWO_GB)

    example_ids = torch.tensor([ids[0], ids[0]])
    example = {"input_ids": example_ids, "attention_mask": torch.ones_like(example_ids),
               "token_type_ids": torch.zeros_like(example_ids)}
    batch, seq = torch.export.Dim("batch"), torch.export.Dim("sequence")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        path = tmp / "model.onnx"
        program = torch.onnx.export(
            LogitsOnly(model, names), tuple(example[n] for n in names), input_names=names,
            output_names=["logits"], dynamic_shapes=(tuple({0: batch, 1: seq} for _ in names),),
            opset_version=18, dynamo=True, external_data=external,
        )
        program.save(str(path), external_data=external)
        del program, model
        gc.collect()
        memory.mark("export")
        if dtype == "fp16":
            cast_output_to_float32(path)
        fp_tolerance = (not quantize and tolerance) or TOLERANCE[dtype]
        check_parity(path, names, ids, reference, config.pad_token_id, fp_tolerance, dtype)
        memory.mark("parity")
        if quantize:
            path = quantize_int8(path, tmp / "int8", external_data)
            memory.mark("quantize")
            check_parity(path, names, ids, reference, config.pad_token_id, tolerance or int8_tolerance(reference),
                         "int8")
            memory.mark("int8 parity")
        out.mkdir(parents=True, exist_ok=True)
        for stale in ["model.onnx.data", "model.onnx_data"]:
            (out / stale).unlink(missing_ok=True)
        for f in ["model.onnx", *referenced_files(path)]:
            shutil.copy(path.parent / f, out / f)
    tokenizer.save_pretrained(str(out))
    move_template_into_config(out)
    config.save_pretrained(str(out))
    for extra in ["special_tokens_map.json", "generation_config.json", "vocab.json", "merges.txt"]:
        (out / extra).unlink(missing_ok=True)
    print(f"exported {source} -> {out} ({quantize or dtype}); parity scores {np.round(reference, 4).tolist()}")
    print(f"peak RSS by phase: {memory}")
    return reference


class Memory:
    """Peak RSS of each phase (Linux: VmHWM, reset between phases by writing 5 to /proc/self/clear_refs)."""

    def __init__(self):
        self.phases = []

    def mark(self, name):
        status = pathlib.Path("/proc/self/status")
        if not status.exists():
            return
        fields = {l.split(":")[0]: int(l.split()[1]) for l in status.read_text().splitlines() if l.endswith("kB")}
        self.phases.append((name, fields["VmHWM"] / 1024**2))
        if os.environ.get("BON_EXPORT_MEMORY"):
            print(f"memory after {name}: peak {fields['VmHWM'] / 1024**2:.2f} GB, now anon "
                  f"{fields['RssAnon'] / 1024**2:.2f} GB + file {fields['RssFile'] / 1024**2:.2f} GB", flush=True)
        try:
            pathlib.Path("/proc/self/clear_refs").write_text("5")
        except OSError:
            pass

    def __str__(self):
        return ", ".join(f"{name} {gb:.1f} GB" for name, gb in self.phases)


def referenced_files(path):
    """The external-data files the graph at `path` points to (none for a self-contained model)."""
    import onnx
    from onnx.external_data_helper import _get_all_tensors, uses_external_data

    model = onnx.load(str(path), load_external_data=False)
    files = set()
    for tensor in _get_all_tensors(model):
        if uses_external_data(tensor):
            files.update(e.value for e in tensor.external_data if e.key == "location")
    return sorted(files)


def quantize_int8(path, out_dir, external_data):
    """ONNX Runtime's dynamic int8 quantisation (weights per channel, activations quantised at run time)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    out_dir.mkdir()
    fp32_bytes = sum((path.parent / f).stat().st_size for f in ["model.onnx", *referenced_files(path)])
    # int8 weights are a quarter of fp32: one self-contained file below 2 GB.
    external = external_data == "always" or (external_data == "auto" and fp32_bytes / 4 > TWO_GB * 0.9)
    target = out_dir / "model.onnx"
    quantize_dynamic(path, target, per_channel=True, weight_type=QuantType.QInt8,
                     use_external_data_format=external)
    return target


def cast_output_to_float32(path):
    """bon-proxy reads float32 rewards: append a Cast on the fp16 logits. Only the graph is rewritten: external
    weights stay where the exporter put them (re-saving them would write a second full copy)."""
    import onnx
    from onnx import TensorProto, helper

    model = onnx.load(str(path), load_external_data=False)
    out = model.graph.output[0]
    out.name, old = "logits", out.name
    for node in model.graph.node:
        node.output[:] = [("logits_fp16" if o == old else o) for o in node.output]
    model.graph.node.append(helper.make_node("Cast", ["logits_fp16"], ["logits"], to=TensorProto.FLOAT))
    out.type.tensor_type.elem_type = TensorProto.FLOAT
    onnx.save(model, str(path))


def check_parity(path, names, ids, reference, pad_id, tol, what):
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
            sys.exit(f"{what} parity check failed ({name}): ONNX {got} vs transformers {reference} "
                     f"(max diff {worst:.2e} > {tol:g})")
        if np.argsort(got).tolist() != np.argsort(reference).tolist():
            sys.exit(f"{what} parity check failed ({name}): ranking differs: ONNX {got} vs transformers {reference}")
    print(f"{what} parity: max diff {max(abs(a - b) for a, b in zip(alone + batched, reference * 2)):.2e} "
          f"(tolerance {tol:g}), same ranking")


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
    ap.add_argument("--quantize", choices=["int8"], help="dynamic int8 (per channel) after the fp32 export")
    ap.add_argument("--tolerance", type=float, help="largest accepted score difference (default: per dtype)")
    ap.add_argument("--external-data", choices=["auto", "always", "never"], default="auto",
                    help="weights in model.onnx.data: beyond 2 GB (auto), always, or never")
    ap.add_argument("--revision")
    args = ap.parse_args()
    if args.preset:
        source, out = PRESETS[args.preset], args.out or HERE.parent / "exports" / args.preset
    elif args.source and args.out:
        source, out = args.source, args.out
    else:
        ap.error("give SOURCE OUT_DIR, or --preset NAME")
    export(source, out, args.dtype, args.revision, args.tolerance, args.quantize, args.external_data)


if __name__ == "__main__":
    main()
