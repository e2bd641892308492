"""bon-proxy in front of a real llama.cpp server (SmolLM2-135M-Instruct), driven by the official OpenAI Python SDK.

Started by scripts/e2e, which sets:
  BON_E2E_PROXY         bon-proxy with --upstream-n fanout
  BON_E2E_NATIVE_PROXY  bon-proxy with --upstream-n native (one request with n = N)
  BON_E2E_MODEL_DIR     the reward model both proxies use
The winner is checked against an independent scorer (reference_scorer.py), not against the proxy's own numbers,
and the degenerate-text guard's ranking is recomputed here from its documented rule (docs/guide/strategies.md, "Degenerate-text guard").
"""

import os

import openai
import pytest

from reference_scorer import guard_flags

PROXY = os.environ["BON_E2E_PROXY"]
NATIVE_PROXY = os.environ["BON_E2E_NATIVE_PROXY"]
MESSAGES = [
    {"role": "system", "content": "You are a creative writer."},
    {"role": "user", "content": "Write one sentence about a cat who finds a key."},
]
# Every call gets its own seed: distinct seeds give distinct candidates, and a repeat of a seed must reproduce them.
NO_STORE = {"cache-control": "no-store"}


def ranking(bon, scores):
    """Candidate indices best first, by the guard's rule: clean, then length-cut, then repetitive candidates; by score
    within the same flags; ties to the lowest index. Also checks the flags the proxy reported."""
    flags = [guard_flags(c["message"]["content"], c["finish_reason"]) for c in bon["candidates"]]
    assert [c["flags"] for c in bon["candidates"]] == flags
    tier = [2 * ("repetitive" in f) + ("truncated" in f) for f in flags]
    return sorted(range(len(scores)), key=lambda i: (tier[i], -scores[i], i))


def best_of_4(client, seed, **extra):
    raw = client.chat.completions.with_raw_response.create(
        model="smollm2", messages=MESSAGES, max_tokens=40, seed=seed,
        extra_headers={"x-bon-n": "4", **NO_STORE}, extra_body={"bon": {"return_candidates": True}}, **extra,
    )
    return raw, raw.parse()


def test_the_winner_is_the_best_scored_of_n_distinct_candidates(client, scorer):
    raw, completion = best_of_4(client, seed=101)
    assert raw.headers["x-bon-n"] == "4"
    assert raw.headers["x-bon-cache"] == "bypass"
    bon = completion.model_extra["bon"]
    texts = [c["message"]["content"] for c in bon["candidates"]]
    assert len(texts) == 4 and all(texts), bon
    assert len(set(texts)) == 4, f"4 distinct candidates expected: {texts}"

    reference = [scorer.score(MESSAGES, t) for t in texts]
    for got, want in zip(bon["scores"], reference):
        assert abs(got - want) < 1e-3, (bon["scores"], reference)
    header_scores = [float(s) for s in raw.headers["x-bon-scores"].split(",")]
    assert header_scores == pytest.approx(bon["scores"], abs=1e-5)

    best = ranking(bon, reference)[0]
    assert int(raw.headers["x-bon-winner"]) == best == bon["winner"]
    assert completion.choices[0].message.content == texts[best]
    assert completion.id.startswith("chatcmpl-bon-")

    # usage counts every candidate.
    spent = sum(c["completion_tokens"] for c in bon["candidates"])
    assert completion.usage.completion_tokens == spent
    assert int(raw.headers["x-bon-winner-completion-tokens"]) == bon["candidates"][best]["completion_tokens"]
    assert completion.usage.prompt_tokens % 4 == 0 and completion.usage.prompt_tokens > 0
    assert completion.usage.total_tokens == completion.usage.prompt_tokens + spent


def test_streaming_sends_the_same_winner_as_the_non_streamed_call(client):
    _, completion = best_of_4(client, seed=202)
    stream = client.chat.completions.create(
        model="smollm2", messages=MESSAGES, max_tokens=40, seed=202, stream=True,
        stream_options={"include_usage": True}, extra_headers={"x-bon-n": "4", **NO_STORE},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == completion.choices[0].message.content
    assert sum(1 for c in chunks if c.choices and c.choices[0].delta.content) > 1, "streamed in pieces"
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] in ("stop", "length")
    assert chunks[-1].usage.completion_tokens == completion.usage.completion_tokens
    assert chunks[-1].model_extra["bon"]["winner"] == completion.model_extra["bon"]["winner"]


def test_pruning_stops_losers_early_and_streams_the_survivor_live(client, scorer):
    story = [{"role": "user", "content": "Write a short story about a cat who finds a key."}]
    raw = client.chat.completions.with_raw_response.create(
        model="smollm2", messages=story, max_tokens=64, seed=404, stream=True, stream_options={"include_usage": True},
        extra_headers={"x-bon-n": "4", "x-bon-prune-every": "8", **NO_STORE},
        extra_body={"bon": {"return_candidates": True}},
    )
    chunks = list(raw.parse())
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    bon = chunks[-1].model_extra["bon"]
    candidates, winner, pruned = bon["candidates"], bon["winner"], bon["pruned"]
    assert chunks[0].choices[0].delta.role == "assistant"
    assert len(pruned) >= 1 and winner not in pruned, bon
    assert text == candidates[winner]["message"]["content"]
    # The survivor is scored whole; each stopped candidate keeps its partial answer and that prefix's score.
    assert abs(scorer.score(story, text) - bon["scores"][winner]) < 1e-3
    for i in pruned:
        partial = candidates[i]["message"]["content"]
        assert candidates[i]["pruned"] is True and candidates[i]["finish_reason"] is None
        assert abs(scorer.score(story, partial) - bon["scores"][i]) < 1e-3, (i, partial)
    # usage counts what was generated, stopped candidates included.
    assert chunks[-1].usage.completion_tokens == sum(c["completion_tokens"] for c in candidates)


def test_n_2_returns_the_two_best_candidates_in_score_order(client):
    _, completion = best_of_4(client, seed=303, n=2)
    bon = completion.model_extra["bon"]
    order = ranking(bon, bon["scores"])
    assert [c.index for c in completion.choices] == [0, 1]
    assert [c.message.content for c in completion.choices] == [bon["candidates"][i]["message"]["content"] for i in order[:2]]


def test_bad_n_raises_bad_request_error(client):
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model="smollm2", messages=MESSAGES, extra_headers={"x-bon-n": "0"})
    assert err.value.status_code == 400
    assert "x-bon-n" in err.value.message
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="smollm2", messages=MESSAGES, extra_body={"bon": {"n": "many"}})


def test_models_are_listed_through_the_proxy(client):
    assert "smollm2" in [m.id for m in client.models.list().data]


def test_native_n_makes_one_upstream_request_for_n_candidates(scorer):
    client = openai.OpenAI(base_url=f"{NATIVE_PROXY}/v1", api_key="unused", max_retries=0, timeout=300)
    raw, completion = best_of_4(client, seed=404)
    bon = completion.model_extra["bon"]
    texts = [c["message"]["content"] for c in bon["candidates"]]
    assert raw.headers["x-bon-n"] == "4" and len(texts) == 4 and all(texts)
    assert len(set(texts)) > 1, f"llama.cpp sampled n choices: {texts}"
    reference = [scorer.score(MESSAGES, t) for t in texts]
    best = ranking(bon, reference)[0]
    assert completion.choices[0].message.content == texts[best]
    metrics = openai.OpenAI(base_url=NATIVE_PROXY, api_key="x").get("/metrics", cast_to=str)
    assert 'bon_candidates_total{outcome="ok"} 4' in metrics
