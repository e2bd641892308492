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
    """`bon_loop` [B, 1]: loop_share_numpy in ONNX, every lag at once (a few dozen nodes: one node per lag and gram
    position cost ~1,100 nodes, whose dispatch was most of a short batch's run time). The ids and the response mask
    are padded in front by LOOP_LAGS and gathered through an index [S, LOOP_LAGS] (t + LOOP_LAGS - k) into every
    lag's view [B, S, LOOP_LAGS]; a position matches at lag k when its id and the lagged id are equal and both are
    response tokens (a non-response position's id is made unique first); the 4-gram ends at t when the matches at
    t-3..t all hold (shifted along S, False in front)."""
    lags, gram = LOOP_LAGS, LOOP_GRAM
    inits = [
        const("bon_lp_zero_i", 0, np.int64),
        const("bon_lp_one_i", 1, np.int64),
        const("bon_lp_one_v", [1], np.int64),
        const("bon_lp_ax2", [2], np.int64),
        const("bon_lp_pads", [0, lags, 0, 0], np.int64),
        const("bon_lp_id_pad", -1, np.int32),
        const("bon_lp_minus2", -2, np.int32),
        const("bon_lp_false", False, np.bool_),
        # offsets[k - 1] = LOOP_LAGS - k: the padded column of position t at lag k is t + offsets[k - 1].
        const("bon_lp_offsets", [[lags - k for k in range(1, lags + 1)]], np.int64),
        const("bon_lp_gram_pads", [0, gram - 1, 0, 0, 0, 0], np.int64),
        const("bon_lp_starts_ax1", [1], np.int64),
    ]
    nodes = [
        helper.make_node("Shape", ["input_ids"], ["bon_lp_shape"]),
        helper.make_node("Gather", ["bon_lp_shape", "bon_lp_one_i"], ["bon_lp_s"], axis=0),
        helper.make_node("Range", ["bon_lp_zero_i", "bon_lp_s", "bon_lp_one_i"], ["bon_lp_t"]),
        helper.make_node("Unsqueeze", ["bon_lp_t", "bon_lp_one_v"], ["bon_lp_t2"]),
        helper.make_node("Add", ["bon_lp_t2", "bon_lp_offsets"], ["bon_lp_idx"]),
        helper.make_node("Cast", ["bon_resp"], ["bon_lp_rb"], to=TensorProto.BOOL),
        # A position that is not a response token gets an id of its own (-2 - t) that nothing else equals, so an
        # equal pair is two response tokens; the padding in front is -1. int32 halves what the gather moves.
        helper.make_node("Cast", ["input_ids"], ["bon_lp_ids32"], to=TensorProto.INT32),
        helper.make_node("Cast", ["bon_lp_t"], ["bon_lp_t32"], to=TensorProto.INT32),
        helper.make_node("Sub", ["bon_lp_minus2", "bon_lp_t32"], ["bon_lp_own"]),
        helper.make_node("Where", ["bon_lp_rb", "bon_lp_ids32", "bon_lp_own"], ["bon_lp_key"]),
        helper.make_node("Pad", ["bon_lp_key", "bon_lp_pads", "bon_lp_id_pad"], ["bon_lp_key_p"]),
        helper.make_node("Gather", ["bon_lp_key_p", "bon_lp_idx"], ["bon_lp_key_lag"], axis=1),
        helper.make_node("Unsqueeze", ["bon_lp_key", "bon_lp_ax2"], ["bon_lp_key3"]),
        helper.make_node("Equal", ["bon_lp_key3", "bon_lp_key_lag"], ["bon_lp_e"]),
        helper.make_node("Pad", ["bon_lp_e", "bon_lp_gram_pads", "bon_lp_false"], ["bon_lp_e_p"]),
    ]
    hits = None
    for j in range(gram):
        # The match at t - j: columns gram-1-j .. gram-1-j+S of the padded matches.
        inits.append(const(f"bon_lp_g{j}_start", [gram - 1 - j], np.int64))
        inits.append(const(f"bon_lp_g{j}_extra", [gram - 1 - j], np.int64))
        nodes += [
            helper.make_node("Add", ["bon_lp_s", f"bon_lp_g{j}_extra"], [f"bon_lp_g{j}_end"]),
            helper.make_node("Slice", ["bon_lp_e_p", f"bon_lp_g{j}_start", f"bon_lp_g{j}_end", "bon_lp_starts_ax1"],
                             [f"bon_lp_g{j}"]),
        ]
        if hits is None:
            hits = f"bon_lp_g{j}"
        else:
            nodes.append(helper.make_node("And", [hits, f"bon_lp_g{j}"], [f"bon_lp_and{j}"]))
            hits = f"bon_lp_and{j}"
    nodes += [
        helper.make_node("Cast", [hits], ["bon_lp_gf"], to=TensorProto.FLOAT),
        # Any lag: the largest of 0/1 over the lags (ReduceMax takes axes as an attribute before opset 18).
        helper.make_node("ReduceMax", ["bon_lp_gf"], ["bon_lp_hf"], axes=[2], keepdims=0),
        helper.make_node("Mul", ["bon_lp_hf", "bon_resp"], ["bon_lp_hr"]),
        helper.make_node("ReduceSum", ["bon_lp_hr", "bon_ax1"], ["bon_lp_sum"], keepdims=1),
        helper.make_node("Div", ["bon_lp_sum", "bon_resp_den"], ["bon_loop"]),
    ]
    return nodes, inits
