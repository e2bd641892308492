"""Features of bon-proxy's default reward model (v2) and of its fast variant, computed two ways that must agree:

- `features_numpy`: numpy, from the backbone's hidden states (training, and the parity check);
- `feature_nodes`: ONNX nodes appended to the backbone graph (what bon-proxy runs).

One backbone pass over the (prompt, response) pair, encoded as bon-proxy encodes it (BERT pair post-processor,
256 tokens, truncated from the left, longest part first). From four depths of the int8 all-MiniLM-L6-v2 network
(embeddings, layers 2, 4 and 6) it takes the mean and the max of the response tokens and the mean of the prompt
tokens, plus four scalars:

    log(1 + response tokens), log(1 + prompt tokens),
    loop share: the share of response tokens that close a 4-gram already seen in the previous 64 tokens
        (a looping answer scores near 1, ordinary prose near 0.05),
    cut: 1 when the pair filled the 256-token window (the start of the text was not seen).

The fast variant (FAST) reads the embedding layer only, over a 512-token window, with six poolings instead of three
(the mean, max, min and standard deviation of the response tokens, the mean and max of the prompt tokens), plus the
same four scalars: the graph is cut after the embedding layer, so the transformer layers never run. (The fast model
adds a trained token branch over the same embeddings: assemble_default.token_branch_nodes, trained by train_fast.py.)
"""

from collections import namedtuple


import numpy as np
from onnx import TensorProto, helper, numpy_helper

LAYERS = ["layer_norm", "layer_norm_4", "layer_norm_8", "last_hidden_state"]
HIDDEN = 384
MAX_TOKENS = 256
LOOP_LAGS = 64
LOOP_GRAM = 4
NEG = -1.0e4  # what padding becomes before a max
N_SCALARS = 4
N_FEATURES = len(LAYERS) * 3 * HIDDEN + N_SCALARS

# Which hidden states, which poolings of each (in this order), and the token window.
Spec = namedtuple("Spec", "layers pools max_tokens")
DEFAULT = Spec(LAYERS, ("mean_r", "max_r", "mean_p"), MAX_TOKENS)
FAST = Spec(LAYERS[:1], ("mean_r", "max_r", "mean_p", "std_r", "min_r", "max_p"), 512)


def n_features(spec):
    return len(spec.layers) * len(spec.pools) * HIDDEN + N_SCALARS


def loop_share_numpy(ids, resp):
    """Share of response positions t whose 4-gram ids[t-3..t] equals ids[t-3-k..t-k] for some lag k in 1..64,
    every one of those positions being response tokens."""
    b, s = ids.shape
    hits = np.zeros((b, s), bool)
    for k in range(1, LOOP_LAGS + 1):
        if k >= s:
            break
        eq = np.zeros((b, s), bool)
        eq[:, k:] = (ids[:, k:] == ids[:, :-k]) & (resp[:, k:] > 0) & (resp[:, :-k] > 0)
        gram = eq.copy()
        for j in range(1, LOOP_GRAM):
            shifted = np.zeros((b, s), bool)
            shifted[:, j:] = eq[:, :-j]
            gram &= shifted
        hits |= gram
    return (hits * resp).sum(1) / np.maximum(resp.sum(1), 1.0)


def features_numpy(hidden_by_layer, ids, mask, types, spec=DEFAULT):
    """[B, n_features(spec)] float32 from the spec's layers' hidden states [B, S, H] and the int64 inputs [B, S]."""
    mask = mask.astype(np.float32)
    resp = types.astype(np.float32) * mask
    prompt = mask - resp
    resp_len = resp.sum(1, keepdims=True)
    prompt_len = prompt.sum(1, keepdims=True)
    parts = []
    for hidden in hidden_by_layer:
        mean_r = (hidden * resp[..., None]).sum(1) / np.maximum(resp_len, 1.0)
        pools = {
            "mean_r": mean_r,
            "max_r": np.where(resp[..., None] > 0, hidden, NEG).max(1) * (resp_len > 0),
            "mean_p": (hidden * prompt[..., None]).sum(1) / np.maximum(prompt_len, 1.0),
            "std_r": np.sqrt(np.maximum(
                (hidden * hidden * resp[..., None]).sum(1) / np.maximum(resp_len, 1.0) - mean_r * mean_r, 0.0)),
            "min_r": np.where(resp[..., None] > 0, hidden, -NEG).min(1) * (resp_len > 0),
            "max_p": np.where(prompt[..., None] > 0, hidden, NEG).max(1) * (prompt_len > 0),
        }
        parts += [pools[name] for name in spec.pools]
    scalars = np.stack([
        np.log1p(resp_len[:, 0]),
        np.log1p(prompt_len[:, 0]),
        loop_share_numpy(ids, resp),
        (mask.sum(1) >= spec.max_tokens).astype(np.float32),
    ], axis=1)
    return np.concatenate(parts + [scalars], axis=1).astype(np.float32)


def const(name, value, dtype):
    return numpy_helper.from_array(np.asarray(value, dtype=dtype), name)


def feature_nodes(spec=DEFAULT):
    """ONNX nodes and initializers computing `bon_features` [B, n_features(spec)] from the graph's inputs and the
    spec's layers."""
    inits = [
        const("bon_ax1", [1], np.int64),
        const("bon_axm1", [-1], np.int64),
        const("bon_one", [1.0], np.float32),
        const("bon_zero", [0.0], np.float32),
        const("bon_neg", [NEG], np.float32),
        const("bon_max_tokens", [float(spec.max_tokens)], np.float32),
    ]
    nodes = [
        helper.make_node("Cast", ["attention_mask"], ["bon_mask"], to=TensorProto.FLOAT),
        helper.make_node("Cast", ["token_type_ids"], ["bon_type"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["bon_type", "bon_mask"], ["bon_resp"]),
        helper.make_node("Sub", ["bon_mask", "bon_resp"], ["bon_prompt"]),
        helper.make_node("ReduceSum", ["bon_resp", "bon_ax1"], ["bon_resp_len"], keepdims=1),
        helper.make_node("ReduceSum", ["bon_prompt", "bon_ax1"], ["bon_prompt_len"], keepdims=1),
        helper.make_node("ReduceSum", ["bon_mask", "bon_ax1"], ["bon_total_len"], keepdims=1),
        helper.make_node("Max", ["bon_resp_len", "bon_one"], ["bon_resp_den"]),
        helper.make_node("Max", ["bon_prompt_len", "bon_one"], ["bon_prompt_den"]),
        helper.make_node("Unsqueeze", ["bon_resp", "bon_axm1"], ["bon_resp3"]),
        helper.make_node("Unsqueeze", ["bon_prompt", "bon_axm1"], ["bon_prompt3"]),
        helper.make_node("Greater", ["bon_resp3", "bon_zero"], ["bon_resp3_on"]),
        helper.make_node("Greater", ["bon_resp_len", "bon_zero"], ["bon_has_resp_b"]),
        helper.make_node("Cast", ["bon_has_resp_b"], ["bon_has_resp"], to=TensorProto.FLOAT),
    ]
    if "min_r" in spec.pools:
        inits.append(const("bon_pos", [-NEG], np.float32))
    if "max_p" in spec.pools:
        nodes += [
            helper.make_node("Greater", ["bon_prompt3", "bon_zero"], ["bon_prompt3_on"]),
            helper.make_node("Greater", ["bon_prompt_len", "bon_zero"], ["bon_has_prompt_b"]),
            helper.make_node("Cast", ["bon_has_prompt_b"], ["bon_has_prompt"], to=TensorProto.FLOAT),
        ]
    parts = []
    for i, layer in enumerate(spec.layers):
        p = f"bon_l{i}"
        extra = {
            "std_r": [
                helper.make_node("Mul", [layer, layer], [f"{p}_sq"]),
                helper.make_node("Mul", [f"{p}_sq", "bon_resp3"], [f"{p}_sqm"]),
                helper.make_node("ReduceSum", [f"{p}_sqm", "bon_ax1"], [f"{p}_sqs"], keepdims=0),
                helper.make_node("Div", [f"{p}_sqs", "bon_resp_den"], [f"{p}_sq_mean"]),
                helper.make_node("Mul", [f"{p}_mean_r", f"{p}_mean_r"], [f"{p}_mean_sq"]),
                helper.make_node("Sub", [f"{p}_sq_mean", f"{p}_mean_sq"], [f"{p}_var"]),
                helper.make_node("Max", [f"{p}_var", "bon_zero"], [f"{p}_var0"]),
                helper.make_node("Sqrt", [f"{p}_var0"], [f"{p}_std_r"]),
            ],
            "min_r": [
                helper.make_node("Where", ["bon_resp3_on", layer, "bon_pos"], [f"{p}_rw_min"]),
                helper.make_node("ReduceMin", [f"{p}_rw_min"], [f"{p}_rmin"], axes=[1], keepdims=0),
                helper.make_node("Mul", [f"{p}_rmin", "bon_has_resp"], [f"{p}_min_r"]),
            ],
            "max_p": [
                helper.make_node("Where", ["bon_prompt3_on", layer, "bon_neg"], [f"{p}_pw"]),
                helper.make_node("ReduceMax", [f"{p}_pw"], [f"{p}_pmax"], axes=[1], keepdims=0),
                helper.make_node("Mul", [f"{p}_pmax", "bon_has_prompt"], [f"{p}_max_p"]),
            ],
        }
        nodes += [
            helper.make_node("Mul", [layer, "bon_resp3"], [f"{p}_rm"]),
            helper.make_node("ReduceSum", [f"{p}_rm", "bon_ax1"], [f"{p}_rs"], keepdims=0),
            helper.make_node("Div", [f"{p}_rs", "bon_resp_den"], [f"{p}_mean_r"]),
            helper.make_node("Where", ["bon_resp3_on", layer, "bon_neg"], [f"{p}_rw"]),
            # ReduceMax takes its axes as an attribute before opset 18 (the backbone is opset 17).
            helper.make_node("ReduceMax", [f"{p}_rw"], [f"{p}_rmax"], axes=[1], keepdims=0),
            helper.make_node("Mul", [f"{p}_rmax", "bon_has_resp"], [f"{p}_max_r"]),
            helper.make_node("Mul", [layer, "bon_prompt3"], [f"{p}_pm"]),
            helper.make_node("ReduceSum", [f"{p}_pm", "bon_ax1"], [f"{p}_ps"], keepdims=0),
            helper.make_node("Div", [f"{p}_ps", "bon_prompt_den"], [f"{p}_mean_p"]),
        ]
        for name in spec.pools:  # after the nodes above: std_r reads mean_r
            nodes += extra.get(name, [])
        parts += [f"{p}_{name}" for name in spec.pools]
    loop_nodes, loop_inits = loop_share_nodes()
    nodes += loop_nodes
    inits += loop_inits
    nodes += [
        helper.make_node("Add", ["bon_resp_len", "bon_one"], ["bon_resp_len1"]),
        helper.make_node("Log", ["bon_resp_len1"], ["bon_log_resp"]),
        helper.make_node("Add", ["bon_prompt_len", "bon_one"], ["bon_prompt_len1"]),
        helper.make_node("Log", ["bon_prompt_len1"], ["bon_log_prompt"]),
        helper.make_node("GreaterOrEqual", ["bon_total_len", "bon_max_tokens"], ["bon_cut_b"]),
        helper.make_node("Cast", ["bon_cut_b"], ["bon_cut"], to=TensorProto.FLOAT),
        helper.make_node(
            "Concat", parts + ["bon_log_resp", "bon_log_prompt", "bon_loop", "bon_cut"], ["bon_features"], axis=1),
    ]
    return nodes, inits


def loop_share_nodes():
    """`bon_loop` [B, 1]: loop_share_numpy in ONNX. For every lag k, shift the ids and the response mask right by
    k (Pad + Slice back to S), compare, then AND the comparison with itself shifted by 1..3 (a 4-gram match)."""
    nodes, inits = [], []
    inits += [
        const("bon_lp_starts", [0], np.int64),
        const("bon_lp_axes", [1], np.int64),
        const("bon_lp_one_i", [1], np.int64),
    ]
    nodes += [
        helper.make_node("Shape", ["input_ids"], ["bon_lp_shape"]),
        helper.make_node("Gather", ["bon_lp_shape", "bon_lp_one_i"], ["bon_lp_s"], axis=0),
        helper.make_node("Cast", ["bon_resp"], ["bon_lp_rb"], to=TensorProto.BOOL),
    ]

    def shifted(src, k, name, pad_value):
        """src [B, S] shifted right by k along axis 1 (pad_value in front), still S wide."""
        inits.append(const(f"{name}_pads", [0, k, 0, 0], np.int64))
        inits.append(const(f"{name}_pv", pad_value, np.int64 if src == "input_ids" else np.bool_))
        nodes.append(helper.make_node("Pad", [src, f"{name}_pads", f"{name}_pv"], [f"{name}_padded"]))
        nodes.append(helper.make_node(
            "Slice", [f"{name}_padded", "bon_lp_starts", "bon_lp_s", "bon_lp_axes"], [name]))
        return name

    hits = None
    for k in range(1, LOOP_LAGS + 1):
        ids_k = shifted("input_ids", k, f"bon_lp_ids{k}", -1)
        resp_k = shifted("bon_lp_rb", k, f"bon_lp_r{k}", False)
        nodes += [
            helper.make_node("Equal", ["input_ids", ids_k], [f"bon_lp_e{k}a"]),
            helper.make_node("And", [f"bon_lp_e{k}a", "bon_lp_rb"], [f"bon_lp_e{k}b"]),
            helper.make_node("And", [f"bon_lp_e{k}b", resp_k], [f"bon_lp_e{k}"]),
        ]
        gram = f"bon_lp_e{k}"
        for j in range(1, LOOP_GRAM):
            sh = shifted(f"bon_lp_e{k}", j, f"bon_lp_e{k}s{j}", False)
            nodes.append(helper.make_node("And", [gram, sh], [f"bon_lp_g{k}_{j}"]))
            gram = f"bon_lp_g{k}_{j}"
        if hits is None:
            hits = gram
        else:
            nodes.append(helper.make_node("Or", [hits, gram], [f"bon_lp_h{k}"]))
            hits = f"bon_lp_h{k}"
    nodes += [
        helper.make_node("Cast", [hits], ["bon_lp_hf"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["bon_lp_hf", "bon_resp"], ["bon_lp_hr"]),
        helper.make_node("ReduceSum", ["bon_lp_hr", "bon_ax1"], ["bon_lp_sum"], keepdims=1),
        helper.make_node("Div", ["bon_lp_sum", "bon_resp_den"], ["bon_loop"]),
    ]
    return nodes, inits
