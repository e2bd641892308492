#!/usr/bin/env python3
"""Builds the tiny reward-model fixtures in models/fixtures/ and their reference scores.

Each fixture is a randomly initialised `*ForSequenceClassification` from `transformers`, exported to ONNX in the
Hugging Face directory layout bon-proxy loads (model.onnx, tokenizer.json, tokenizer_config.json, config.json), with
`reference.json`: for a set of conversations, the text `apply_chat_template` renders, the input ids, and the score
`transformers` computes in PyTorch. The Rust tests (tests/reward.rs) must reproduce the ids exactly and the scores
within 1e-4 through ONNX Runtime.

- tiny-qwen3-chatml: decoder reward model (Qwen3ForSequenceClassification) with a ChatML chat template and a
  byte-level BPE tokenizer; the score is read at the last non-pad token, so the pad id matters.
- tiny-bert-pair: encoder reward model (BertForSequenceClassification) without a chat template: scored on the
  (last user message, response) pair through the tokenizer's pair post-processor, with token_type_ids.

The weights are random (seeded): these fixtures prove the code path, they do not judge quality.
Needs torch, transformers, onnx, onnxscript, onnxruntime (CPU is enough). Run: python models/make_fixtures.py
"""

import gzip
import json
import pathlib

import numpy as np
import onnxruntime as ort
import torch
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from export import LogitsOnly, move_template_into_config
from transformers import (
    BertConfig,
    BertForSequenceClassification,
    PreTrainedTokenizerFast,
    Qwen3Config,
    Qwen3ForSequenceClassification,
)

HERE = pathlib.Path(__file__).resolve().parent
OUT = HERE / "fixtures"
DATA = HERE.parent.parent / "shared" / "data" / "preferences" / "train.jsonl.gz"

CHATML = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% elif message['content'] is not none %}{% for part in message['content'] %}"
    "{% if part['type'] == 'text' %}{{ part['text'] }}{% endif %}{% endfor %}{% endif %}"
    "{% if message.tool_calls is defined and message.tool_calls %}"
    "{% for call in message.tool_calls %}{{ '\n<tool_call>\n' }}"
    "{{ {'name': call.function.name, 'arguments': call.function.arguments} | tojson }}"
    "{{ '\n</tool_call>' }}{% endfor %}{% endif %}"
    "{{ '<|im_end|>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def corpus(limit=3000):
    texts = []
    with gzip.open(DATA, "rt") as f:
        for i, line in enumerate(f):
            if i >= limit:
                break
            row = json.loads(line)
            texts += [row["prompt"], row["chosen"], row["rejected"]]
    return texts


CAPITAL_ANSWERS = [
    "The capital of France is Paris.",
    "I think it might be Lyon, or maybe Marseille.",
    "Paris is the capital and largest city of France, on the Seine.",
    "France? Its capital is Paris, of course!",
]


def conversations():
    long_answer = " ".join(f"step {i}: keep going and check the result." for i in range(40))
    return [
        # Four answers to one question: the integration tests serve them as candidates 0..3 and expect the winner
        # that these reference scores pick.
        *({"name": f"capital_{i}", "messages": [{"role": "user", "content": "What is the capital of France?"}],
           "response": r} for i, r in enumerate(CAPITAL_ANSWERS)),
        {"name": "with_system", "messages": [
            {"role": "system", "content": "You are a terse assistant."},
            {"role": "user", "content": "Name three primary colours."}],
         "response": "Red, yellow, blue."},
        {"name": "multi_turn", "messages": [
            {"role": "user", "content": "Write a haiku about rain."},
            {"role": "assistant", "content": "Soft rain on the roof\nwhispers to the sleeping town\nmorning smells of earth"},
            {"role": "user", "content": "Now one about snow."}],
         "response": "White hush on the pines\nfootprints fill before the dawn\nthe world holds its breath"},
        {"name": "unicode", "messages": [{"role": "user", "content": "Traduis « bonjour » en japonais 🙂"}],
         "response": "こんにちは (konnichiwa) — «bonjour» en japonais."},
        {"name": "content_parts", "messages": [{"role": "user", "content": [
            {"type": "text", "text": "Describe this in one word:"}, {"type": "text", "text": "ocean"}]}],
         "response": "Vast."},
        {"name": "long_truncated", "messages": [{"role": "user", "content": "Explain how to debug a program."}],
         "response": long_answer, "max_tokens": 48},
    ]


def train_bpe(texts, vocab_size, specials=("<|endoftext|>", "<|im_start|>", "<|im_end|>")):
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(specials),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    return tok


def train_wordpiece(texts, vocab_size):
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    trainer = trainers.WordPieceTrainer(
        vocab_size=vocab_size, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"], show_progress=False
    )
    tok.train_from_iterator(texts, trainer)
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", cls), ("[SEP]", sep)]
    )
    return tok


def export(model, path, names, example):
    model.eval()
    wrapped = LogitsOnly(model, names)
    batch, seq = torch.export.Dim("batch"), torch.export.Dim("sequence")
    program = torch.onnx.export(
        wrapped,
        tuple(example[n] for n in names),
        input_names=list(names),
        output_names=["logits"],
        dynamic_shapes=(tuple({0: batch, 1: seq} for _ in names),),
        opset_version=18,
        dynamo=True,
        external_data=False,
    )
    program.save(str(path), external_data=False)


def write_reference(directory, tokenizer, model, convs, use_template, names):
    session = ort.InferenceSession(str(directory / "model.onnx"), providers=["CPUExecutionProvider"])
    cases = []
    for conv in convs:
        case = {"name": conv["name"], "messages": conv["messages"], "response": conv["response"]}
        if use_template:
            full = conv["messages"] + [{"role": "assistant", "content": conv["response"]}]
            text = tokenizer.apply_chat_template(full, tokenize=False)
            ids = tokenizer(text, add_special_tokens=False)["input_ids"]
            assert ids == list(tokenizer.apply_chat_template(full, tokenize=True, return_dict=True)["input_ids"])
            type_ids = [0] * len(ids)
            case["text"] = text
        else:
            last_user = [m for m in conv["messages"] if m["role"] == "user"][-1]
            prompt = last_user["content"] if isinstance(last_user["content"], str) else "\n".join(
                p["text"] for p in last_user["content"] if p.get("type") == "text")
            # Encoder models keep [CLS] ... [SEP]: the tokenizer truncates the longest part from the left.
            tokenizer.truncation_side = "left"
            enc = tokenizer(prompt, conv["response"], return_token_type_ids=True,
                            truncation="longest_first" if "max_tokens" in conv else False,
                            max_length=conv.get("max_tokens"))
            ids, type_ids = enc["input_ids"], enc["token_type_ids"]
            case["pair"] = [prompt, conv["response"]]
        if "max_tokens" in conv and use_template:
            # bon-proxy truncates from the left so the end of the response survives.
            ids, type_ids = ids[-conv["max_tokens"]:], type_ids[-conv["max_tokens"]:]
        if "max_tokens" in conv:
            case["max_tokens"] = conv["max_tokens"]
        feed = {"input_ids": torch.tensor([ids]), "attention_mask": torch.ones(1, len(ids), dtype=torch.long)}
        if "token_type_ids" in names:
            feed["token_type_ids"] = torch.tensor([type_ids])
        with torch.no_grad():
            score = model(**feed).logits[0, 0].item()
        onnx_score = session.run(["logits"], {k: v.numpy() for k, v in feed.items()})[0][0, 0]
        assert abs(onnx_score - score) < 1e-4, (conv["name"], onnx_score, score)
        case.update(input_ids=ids, score=score)
        cases.append(case)

    # The same conversations scored as one right-padded batch must give the same scores: this is what a wrong pad id
    # would break for a decoder model (it reads the score at the last non-pad token).
    width = max(len(c["input_ids"]) for c in cases)
    pad = model.config.pad_token_id
    batch_ids = torch.tensor([c["input_ids"] + [pad] * (width - len(c["input_ids"])) for c in cases])
    mask = torch.tensor([[1] * len(c["input_ids"]) + [0] * (width - len(c["input_ids"])) for c in cases])
    feed = {"input_ids": batch_ids, "attention_mask": mask}
    if "token_type_ids" in names:
        feed["token_type_ids"] = torch.tensor(
            [c_types + [0] * (width - len(c_types)) for c_types in (_type_ids(tokenizer, c) for c in cases)]
        )
    with torch.no_grad():
        batched = model(**feed).logits[:, 0].tolist()
    onnx_batched = session.run(["logits"], {k: v.numpy() for k, v in feed.items()})[0][:, 0].tolist()
    for case, b, o in zip(cases, batched, onnx_batched):
        assert abs(case["score"] - b) < 1e-4, (case["name"], case["score"], b)
        assert abs(case["score"] - o) < 1e-4, (case["name"], case["score"], o)
    (directory / "reference.json").write_text(json.dumps({"cases": cases}, indent=1, ensure_ascii=False) + "\n")


def _type_ids(tokenizer, case):
    last_user = [m for m in case["messages"] if m["role"] == "user"][-1]
    prompt = last_user["content"] if isinstance(last_user["content"], str) else "\n".join(
        p["text"] for p in last_user["content"] if p.get("type") == "text")
    return tokenizer(prompt, case["response"], return_token_type_ids=True,
                     truncation="longest_first" if "max_tokens" in case else False,
                     max_length=case.get("max_tokens"))["token_type_ids"]


def make_qwen3(texts):
    d = OUT / "tiny-qwen3-chatml"
    d.mkdir(parents=True, exist_ok=True)
    raw = train_bpe(texts, 512)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=raw, eos_token="<|im_end|>", pad_token="<|endoftext|>", chat_template=CHATML
    )
    torch.manual_seed(0)
    config = Qwen3Config(
        vocab_size=raw.get_vocab_size(), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, head_dim=8, max_position_embeddings=512, num_labels=1,
        pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id, bos_token_id=None,
        tie_word_embeddings=False,
    )
    model = Qwen3ForSequenceClassification(config)
    # Random init is ~N(0, 0.02): scale the head so scores spread over a useful range.
    with torch.no_grad():
        model.score.weight.mul_(50.0)
    model.eval()
    names = ["input_ids", "attention_mask"]
    example = {"input_ids": torch.tensor([[5, 6, 7, 8], [9, 10, 0, 0]]), "attention_mask": torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]])}
    example["input_ids"][1, 2:] = tokenizer.pad_token_id
    export(model, d / "model.onnx", names, example)
    save(tokenizer, config, d)
    write_reference(d, tokenizer, model, conversations(), True, names)


def make_bert(texts):
    d = OUT / "tiny-bert-pair"
    d.mkdir(parents=True, exist_ok=True)
    raw = train_wordpiece(texts, 600)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=raw, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]",
        mask_token="[MASK]",
    )
    torch.manual_seed(1)
    config = BertConfig(
        vocab_size=raw.get_vocab_size(), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=64, max_position_embeddings=256, num_labels=1, pad_token_id=tokenizer.pad_token_id,
    )
    model = BertForSequenceClassification(config)
    with torch.no_grad():
        model.bert.pooler.dense.weight.mul_(30.0)
        model.classifier.weight.mul_(50.0)
    model.eval()
    names = ["input_ids", "attention_mask", "token_type_ids"]
    example = {
        "input_ids": torch.tensor([[2, 6, 7, 3], [2, 9, 3, 0]]),
        "attention_mask": torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0]]),
        "token_type_ids": torch.tensor([[0, 0, 0, 1], [0, 0, 1, 0]]),
    }
    export(model, d / "model.onnx", names, example)
    save(tokenizer, config, d)
    write_reference(d, tokenizer, model, conversations(), False, names)


def save(tokenizer, config, d):
    tokenizer.save_pretrained(str(d))
    config.save_pretrained(str(d))
    # Keep the template inside tokenizer_config.json (the layout most published reward models use).
    move_template_into_config(d)
    for extra in ["special_tokens_map.json", "model.safetensors", "generation_config.json"]:
        (d / extra).unlink(missing_ok=True)


if __name__ == "__main__":
    np.random.seed(0)
    texts = corpus()
    make_qwen3(texts)
    make_bert(texts)
    for d in sorted(OUT.iterdir()):
        print(d.name, sorted(p.name for p in d.iterdir()), sum(p.stat().st_size for p in d.iterdir()), "bytes")
