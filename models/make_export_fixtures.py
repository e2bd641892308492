#!/usr/bin/env python3
"""Fixtures proving models/export.py and the chat templates of real reward-model families, on bon-proxy's code path.

1. models/fixtures/templates/: the public Qwen3 and Llama-3.1 chat templates (text from llama.cpp's
   models/templates/) and cases.json: conversations (single turn, multi-turn, system message, tool calls with tools
   offered) with the exact text transformers' apply_chat_template(..., tokenize=False) renders. tests/templates.rs
   requires bon-proxy's rendering to be byte-identical.
2. models/fixtures/tiny-qwen3-export, tiny-llama-export: tiny random Qwen3ForSequenceClassification and
   LlamaForSequenceClassification with those templates, saved by transformers and exported by models/export.py
   (parity-checked), with reference.json (rendered text, input ids, transformers' scores). tests/reward.rs checks
   them like the other fixtures.
3. models/fixtures/tiny-qwen3-int8: the same Qwen3 classifier quantised by `export.py --quantize int8`
   (`--int8` makes only this one).
Run: python models/make_export_fixtures.py [--int8] (models/requirements-export.txt, CPU).
"""

import json
import pathlib
import sys
import tempfile

import torch
from transformers import LlamaConfig, LlamaForSequenceClassification, PreTrainedTokenizerFast, Qwen3Config, Qwen3ForSequenceClassification

import export
from make_fixtures import CAPITAL_ANSWERS, corpus, train_bpe

HERE = pathlib.Path(__file__).resolve().parent
FIXTURES = HERE / "fixtures"
TEMPLATES = FIXTURES / "templates"

WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string", "description": "City name"},
                                                    "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
                   "required": ["city"]}}}

TEMPLATE_CASES = [
    {"name": "single_turn", "messages": [
        {"role": "user", "content": "What is the capital of France?"},
        {"role": "assistant", "content": "Paris."}]},
    {"name": "multi_turn", "messages": [
        {"role": "user", "content": "Write a haiku about rain."},
        {"role": "assistant", "content": "Soft rain on the roof\nwhispers to the sleeping town"},
        {"role": "user", "content": "  Now one about snow.  "},
        {"role": "assistant", "content": "White hush on the pines."}]},
    {"name": "system", "messages": [
        {"role": "system", "content": "You are terse. Answer in one word."},
        {"role": "user", "content": "Colour of the sky?"},
        {"role": "assistant", "content": "Blue."}]},
    {"name": "tool_calls", "tools": [WEATHER_TOOL], "messages": [
        {"role": "user", "content": "What's the weather in Paris, in celsius?"},
        {"role": "assistant", "content": "", "tool_calls": [{"id": "call_1", "type": "function", "function": {
            "name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "{\"temperature\": 21, \"sky\": \"clear\"}"},
        {"role": "assistant", "content": "It is 21 °C and clear in Paris."}]},
]

FAMILIES = {
    "qwen3": {
        "template": "qwen3.jinja",
        "specials": ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<tool_call>", "</tool_call>", "<think>", "</think>"],
        "tokens": {"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"},
    },
    "llama-3.1": {
        "template": "llama-3.1.jinja",
        "specials": ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>",
                     "<|eom_id|>", "<|python_tag|>", "<|finetune_right_pad_id|>"],
        "tokens": {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>", "pad_token": "<|finetune_right_pad_id|>"},
    },
}


def tokenizer_for(family, texts):
    spec = FAMILIES[family]
    raw = train_bpe(texts, 640, spec["specials"])
    return PreTrainedTokenizerFast(tokenizer_object=raw, chat_template=(TEMPLATES / spec["template"]).read_text(),
                                  **spec["tokens"])


def render_cases(tokenizer):
    out = []
    for case in TEMPLATE_CASES:
        text = tokenizer.apply_chat_template(case["messages"], tools=case.get("tools"), tokenize=False)
        out.append({**case, "text": text})
    return out


def tiny_model(family, tokenizer):
    torch.manual_seed(2)
    common = dict(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024, num_labels=1,
                  pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=False)
    if family == "qwen3":
        model = Qwen3ForSequenceClassification(Qwen3Config(head_dim=8, **common))
    else:
        model = LlamaForSequenceClassification(LlamaConfig(head_dim=8, **common))
    with torch.no_grad():
        model.score.weight.mul_(50.0)
    return model.eval()


def reference_cases(tokenizer, model):
    convs = [("capital_%d" % i, [{"role": "user", "content": "What is the capital of France?"},
                                 {"role": "assistant", "content": a}]) for i, a in enumerate(CAPITAL_ANSWERS)]
    convs += [(c["name"], c["messages"]) for c in TEMPLATE_CASES if c["name"] != "tool_calls"]
    cases = []
    for name, messages in convs:
        text = tokenizer.apply_chat_template(messages, tokenize=False)
        ids = tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True)["input_ids"]
        with torch.no_grad():
            score = model(input_ids=torch.tensor([ids])).logits[0, 0].item()
        cases.append({"name": name, "messages": messages[:-1], "response": messages[-1]["content"],
                      "text": text, "input_ids": ids, "score": score})
    return cases


def int8_fixture(texts):
    """tiny-qwen3-int8: the tiny Qwen3 classifier through `export.py --quantize int8`. reference.json holds ONNX
    Runtime's (Python) scores of the int8 graph, alone and in one right-padded batch (dynamic quantisation computes
    activation scales per run, so a batch scores slightly differently), beside transformers' fp32 scores. The
    tokenizer is trained on 300 texts, as in test_export.py: with the 1,500-text one, int8 swaps two of the parity
    conversations whose fp32 scores are 0.11 apart and the exporter refuses the model, as it should."""
    import numpy as np
    import onnxruntime as ort

    tokenizer = tokenizer_for("qwen3", texts)
    model = tiny_model("qwen3", tokenizer)
    out = FIXTURES / "tiny-qwen3-int8"
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer.save_pretrained(tmp)
        model.save_pretrained(tmp)
        export.export(tmp, out, quantize="int8")
    cases = reference_cases(tokenizer, model)
    session = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])

    def run(rows):
        width = max(len(r) for r in rows)
        ids = np.array([r + [tokenizer.pad_token_id] * (width - len(r)) for r in rows], dtype=np.int64)
        mask = np.array([[1] * len(r) + [0] * (width - len(r)) for r in rows], dtype=np.int64)
        return session.run(["logits"], {"input_ids": ids, "attention_mask": mask})[0][:, 0].tolist()

    batched = run([c["input_ids"] for c in cases])
    for case, in_batch in zip(cases, batched):
        case["transformers_score"] = case["score"]
        case["score"] = run([case["input_ids"]])[0]
        case["batched_score"] = in_batch
    (out / "reference.json").write_text(json.dumps({"cases": cases}, indent=1, ensure_ascii=False) + "\n")
    print("int8", sorted(p.name for p in out.iterdir()), sum(p.stat().st_size for p in out.iterdir()))


def main():
    if "--int8" in sys.argv:
        int8_fixture(corpus(300))
        return
    texts = corpus(1500)
    template_fixture = {}
    for family in FAMILIES:
        tokenizer = tokenizer_for(family, texts)
        template_fixture[family] = {"template": FAMILIES[family]["template"], "special_tokens": FAMILIES[family]["tokens"],
                                    "cases": render_cases(tokenizer)}
        model = tiny_model(family, tokenizer)
        out = FIXTURES / f"tiny-{family}-export"
        with tempfile.TemporaryDirectory() as tmp:
            tokenizer.save_pretrained(tmp)
            model.save_pretrained(tmp)
            export.export(tmp, out)
        (out / "reference.json").write_text(json.dumps({"cases": reference_cases(tokenizer, model)}, indent=1,
                                                       ensure_ascii=False) + "\n")
        print(family, sorted(p.name for p in out.iterdir()), sum(p.stat().st_size for p in out.iterdir()))
    (TEMPLATES / "cases.json").write_text(json.dumps(template_fixture, indent=1, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
