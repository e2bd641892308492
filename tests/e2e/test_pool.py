"""Scale-out against real parts: a pool of upstreams (the real llama-server twice, plus an address where nothing
listens) with native n split over the pool, and two replicas sharing Debian's real redis-server as their cache,
driven by the official OpenAI Python SDK.

Started by scripts/e2e, which sets:
  BON_E2E_POOL_PROXY    bon-proxy with --upstream LLAMA,LLAMA,DEAD (named llama-a, llama-b, dead), --upstream-n
                        native, --cache-redis REDIS
  BON_E2E_POOL_PROXY_B  a second replica with the same flags
"""

import json
import os
import re
import urllib.request

import openai

POOL = os.environ["BON_E2E_POOL_PROXY"]
POOL_B = os.environ["BON_E2E_POOL_PROXY_B"]
MESSAGES = [{"role": "user", "content": "Name one reason to learn to cook."}]


def sdk(base):
    return openai.OpenAI(base_url=f"{base}/v1", api_key="unused", max_retries=0, timeout=300)


def metric(base, series):
    page = urllib.request.urlopen(f"{base}/metrics").read().decode()
    m = re.search(r"^" + re.escape(series) + r" (\S+)$", page, re.M)
    return float(m.group(1)) if m else 0.0


def test_a_pool_with_a_dead_member_answers_every_best_of_4_with_four_scored_candidates():
    client = sdk(POOL)
    for seed in (11, 12, 13):
        raw = client.chat.completions.with_raw_response.create(
            model="smollm2", messages=MESSAGES, max_tokens=24, seed=seed,
            extra_headers={"x-bon-n": "4", "cache-control": "no-store"},
            extra_body={"bon": {"return_candidates": True}},
        )
        bon = raw.parse().model_extra["bon"]
        assert raw.headers["x-bon-n"] == "4"
        assert len(bon["candidates"]) == 4 and all(c["message"]["content"] for c in bon["candidates"])
        scores = raw.headers["x-bon-scores"].split(",")
        assert len(scores) == 4 and all(s != "-" for s in scores), scores
    # The dead member was found out by the health prober, which runs from start-up: native n was split over
    # the two live members (n=2 each), and nothing went to the dead one.
    assert metric(POOL, 'bon_upstream_requests_total{outcome="ok",upstream="llama-a"}') >= 3
    assert metric(POOL, 'bon_upstream_requests_total{outcome="ok",upstream="llama-b"}') >= 3
    assert metric(POOL, 'bon_upstream_up{upstream="dead"}') == 0
    ready = json.load(urllib.request.urlopen(f"{POOL}/ready"))
    assert ready["status"] == "ready"
    states = {u["name"]: u["state"] for u in ready["upstreams"]}
    assert states == {"llama-a": "up", "llama-b": "up", "dead": "down"}, ready


def test_two_replicas_share_a_result_through_redis():
    kwargs = dict(model="smollm2", messages=MESSAGES, max_tokens=24, seed=777, extra_headers={"x-bon-n": "2"})
    first = sdk(POOL).chat.completions.with_raw_response.create(**kwargs)
    second = sdk(POOL_B).chat.completions.with_raw_response.create(**kwargs)
    assert first.headers["x-bon-cache"] == "miss"
    assert second.headers["x-bon-cache"] == "hit", "replica b found replica a's result in Redis"
    assert second.parse().choices[0].message.content == first.parse().choices[0].message.content
    assert second.headers["x-bon-scores"] == first.headers["x-bon-scores"]
    assert metric(POOL_B, 'bon_cache_redis_requests_total{result="hit"}') >= 1
