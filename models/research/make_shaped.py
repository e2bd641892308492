#!/usr/bin/env python3
"""A random-weight reward model with exactly the architecture of a real one, for measuring memory and speed where the
real weights cannot be downloaded (no Hugging Face access here). Scores are meaningless; cost is the real one.

    python models/research/make_shaped.py OUT_DIR [--shape qwen3-0.6b|qwen3-1.7b]
    python models/export/export.py OUT_DIR EXPORT_DIR [--quantize int8 | --dtype fp16]

qwen3-0.6b is Skywork-Reward-V2-Qwen3-0.6B's config (596M parameters, 2.38 GB fp32), qwen3-1.7b its 1.7B sibling.
The tokenizer is the tiny Qwen3 fixture's (640-token BPE, Qwen3 chat template): texts tokenize longer than with
Qwen's own tokenizer, which only changes how much text makes N tokens. Needs models/export/requirements-export.txt.
"""

import argparse
import pathlib

import torch
from transformers import PreTrainedTokenizerFast, Qwen3Config, Qwen3ForSequenceClassification

HERE = pathlib.Path(__file__).resolve().parent
SHAPES = {
    "qwen3-0.6b": dict(hidden_size=1024, intermediate_size=3072, num_hidden_layers=28, num_attention_heads=16,
                       num_key_value_heads=8),
    "qwen3-1.7b": dict(hidden_size=2048, intermediate_size=6144, num_hidden_layers=28, num_attention_heads=16,
                       num_key_value_heads=8),
}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=pathlib.Path)
    ap.add_argument("--shape", choices=sorted(SHAPES), default="qwen3-0.6b")
    args = ap.parse_args()
    fixture = HERE.parent / "fixtures" / "tiny-qwen3-export"
    tokenizer = PreTrainedTokenizerFast.from_pretrained(str(fixture))
    config = Qwen3Config(
        vocab_size=151936, head_dim=128, max_position_embeddings=40960, rope_theta=1_000_000.0, rms_norm_eps=1e-6,
        tie_word_embeddings=False, num_labels=1, pad_token_id=tokenizer.pad_token_id, **SHAPES[args.shape],
    )
    torch.manual_seed(0)
    model = Qwen3ForSequenceClassification(config).eval()
    params = sum(p.numel() for p in model.parameters())
    model.save_pretrained(str(args.out))
    tokenizer.save_pretrained(str(args.out))
    print(f"{args.shape}: {params / 1e6:.0f}M parameters -> {args.out}")


if __name__ == "__main__":
    main()
