"""Every other /v1 route passed through bon-proxy to a real llama.cpp server (one started with --embeddings), driven
by the official OpenAI Python SDK: what comes back through the proxy is what the upstream answers directly, and the
proxy's key is checked first.

  BON_E2E_PASS_PROXY      bon-proxy with --api-key e2e-key in front of that server
  BON_E2E_EMBED_UPSTREAM  the server itself
"""

import os

import openai
import pytest

PROXY = os.environ["BON_E2E_PASS_PROXY"]
UPSTREAM = os.environ["BON_E2E_EMBED_UPSTREAM"]


@pytest.fixture(scope="module")
def proxied():
    return openai.OpenAI(base_url=f"{PROXY}/v1", api_key="e2e-key", max_retries=0, timeout=300)


@pytest.fixture(scope="module")
def direct():
    return openai.OpenAI(base_url=f"{UPSTREAM}/v1", api_key="unused", max_retries=0, timeout=300)


def test_embeddings_are_the_upstreams(proxied, direct):
    through = proxied.embeddings.create(model="smollm2", input=["The cat found a key.", "Paris"])
    straight = direct.embeddings.create(model="smollm2", input=["The cat found a key.", "Paris"])
    assert len(through.data) == 2 and len(through.data[0].embedding) > 100
    assert [d.embedding for d in through.data] == [d.embedding for d in straight.data]


def test_legacy_completions_plain_and_streamed_are_the_upstreams(proxied, direct):
    ask = dict(model="smollm2", prompt="The capital of France is", max_tokens=8, temperature=0, seed=1)
    through = proxied.completions.create(**ask)
    assert through.choices[0].text == direct.completions.create(**ask).choices[0].text
    pieces = [c.choices[0].text for c in proxied.completions.create(**ask, stream=True) if c.choices]
    assert len(pieces) > 1 and "".join(pieces) == through.choices[0].text


def test_the_proxy_key_is_checked_and_upstream_errors_come_back_as_they_are(proxied):
    wrong = openai.OpenAI(base_url=f"{PROXY}/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        wrong.embeddings.create(model="smollm2", input="x")
    with pytest.raises(openai.BadRequestError):
        proxied.completions.create(model="smollm2", prompt="x", max_tokens=8, extra_body={"n_probs": "many"})
    metrics = openai.OpenAI(base_url=PROXY, api_key="e2e-key").get("/metrics", cast_to=str)
    assert 'bon_passthrough_requests_total{route="/v1/embeddings",status="200"}' in metrics
