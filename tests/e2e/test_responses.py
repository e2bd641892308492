"""The Responses API through bon-proxy in front of a real llama.cpp server, driven by the official OpenAI Python SDK:
`responses.create` (plain, with instructions, with a tool), the SDK's stream helper, and errors as SDK exceptions.
The winner is checked against the independent scorer with the conversation the Response was asked with, so a wrong
translation of `instructions` or `input` shows up as wrong scores."""

import os

import openai
import pytest

from reference_scorer import guard_flags

NO_STORE = {"cache-control": "no-store"}


def test_best_of_4_response_with_instructions_is_the_best_scored_candidate(client, scorer):
    raw = client.responses.with_raw_response.create(
        model="smollm2", instructions="You are a creative writer.", input="Write one sentence about a cat who finds a key.",
        max_output_tokens=40, extra_headers={"x-bon-n": "4", **NO_STORE},
        extra_body={"seed": 505, "bon": {"return_candidates": True}},
    )
    response = raw.parse()
    assert raw.headers["x-bon-n"] == "4"
    assert response.object == "response" and response.id.startswith("resp_")
    assert response.instructions == "You are a creative writer."
    bon = response.model_extra["bon"]
    texts = [c["message"]["content"] for c in bon["candidates"]]
    assert len(texts) == 4 and len(set(texts)) == 4, texts
    # The reward model saw the instructions as the system message, then the input as the user's.
    conversation = [{"role": "system", "content": "You are a creative writer."},
                    {"role": "user", "content": "Write one sentence about a cat who finds a key."}]
    reference = [scorer.score(conversation, t) for t in texts]
    for got, want in zip(bon["scores"], reference):
        assert abs(got - want) < 1e-3, (bon["scores"], reference)
    flags = [guard_flags(c["message"]["content"], c["finish_reason"]) for c in bon["candidates"]]
    tier = [2 * ("repetitive" in f) + ("truncated" in f) for f in flags]
    best = sorted(range(4), key=lambda i: (tier[i], -reference[i], i))[0]
    assert int(raw.headers["x-bon-winner"]) == best == bon["winner"]
    assert response.output_text == texts[best]
    assert response.status == ("incomplete" if bon["candidates"][best]["finish_reason"] == "length" else "completed")
    assert response.usage.output_tokens == sum(c["completion_tokens"] for c in bon["candidates"])
    assert response.usage.input_tokens % 4 == 0 and response.usage.input_tokens > 0


def test_the_sdk_stream_helper_gets_the_winner_event_by_event(client):
    kwargs = dict(model="smollm2", input="Name a colour and say why you like it, in one sentence.",
                  max_output_tokens=200, extra_headers={"x-bon-n": "3"}, extra_body={"seed": 606})
    raw = client.responses.with_raw_response.create(**kwargs)
    whole = raw.parse()
    deltas, kinds = [], []
    with client.responses.stream(**kwargs) as stream:
        for event in stream:
            kinds.append(event.type)
            if event.type == "response.output_text.delta":
                deltas.append(event.delta)
        final = stream.get_final_response()
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed", kinds
    assert len(deltas) > 1, "streamed in pieces"
    assert "".join(deltas) == final.output_text == whole.output_text, "the same Best-of-3 call (cached)"
    assert final.status == "completed"
    assert final.model_extra["bon"]["winner"] == int(raw.headers["x-bon-winner"])
    assert final.model_extra["bon"]["cache"] == "hit"


def test_a_request_with_a_tool_is_answered_with_the_tool_echoed(client):
    tools = [{"type": "function", "name": "get_weather", "description": "The weather in a city",
              "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}]
    raw = client.responses.with_raw_response.create(
        model="smollm2", input="What is the weather in Paris?", tools=tools, max_output_tokens=40,
        extra_headers={"x-bon-n": "2", **NO_STORE},
    )
    response = raw.parse()
    assert raw.headers["x-bon-n"] == "2"
    assert [t.name for t in response.tools] == ["get_weather"]
    # SmolLM2 on llama-server answers tool requests in text; a function_call item is checked with a scripted
    # upstream (tests/responses.rs). Either way every output item is one the SDK knows.
    assert response.output and all(o.type in ("message", "function_call") for o in response.output)


def test_bad_input_raises_bad_request_error(client):
    # Stored state is the upstream's: passed through, and llama-server (which stores nothing) refuses it.
    with pytest.raises(openai.BadRequestError) as err:
        client.responses.create(model="smollm2", input="Hi", previous_response_id="resp_123")
    assert err.value.status_code == 400 and "previous_response_id" in err.value.message
    assert err.value.response.headers["x-bon-selection"] == "passthrough"
    with pytest.raises(openai.BadRequestError) as err:
        client.responses.create(model="smollm2", input=[{"role": "user", "content": 5}])
    assert err.value.param == "input[0].content"
    with pytest.raises(openai.BadRequestError):
        client.responses.create(model="smollm2", input="Hi", extra_headers={"x-bon-n": "0"})


def test_with_pruning_the_survivor_streams_live_through_the_helper(client):
    with client.responses.stream(
        model="smollm2", input="Write a short story about a cat who finds a key.", max_output_tokens=64,
        extra_headers={"x-bon-n": "4", "x-bon-prune-every": "8", **NO_STORE},
        extra_body={"seed": 707, "bon": {"return_candidates": True}},
    ) as stream:
        events = list(stream)
    # A 64-token story usually stops at the limit: the last event is then response.incomplete, which the helper
    # passes on (its get_final_response() wants response.completed, as with OpenAI's own API).
    assert events[-1].type in ("response.completed", "response.incomplete")
    final = events[-1].response
    bon = final.model_extra["bon"]
    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
    assert len(bon["pruned"]) >= 1 and bon["winner"] not in bon["pruned"], bon
    assert "".join(deltas) == final.output_text == bon["candidates"][bon["winner"]]["message"]["content"]
    assert final.status == ("incomplete" if bon["candidates"][bon["winner"]]["finish_reason"] == "length" else "completed")
