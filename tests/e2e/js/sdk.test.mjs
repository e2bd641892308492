// bon-proxy with the official OpenAI JavaScript SDK (its SSE parser differs from Python's).
// Started by scripts/e2e with BON_E2E_PROXY pointing at a proxy in front of llama.cpp's server.
import { test } from "node:test";
import assert from "node:assert/strict";
import OpenAI from "openai";

const client = new OpenAI({ baseURL: `${process.env.BON_E2E_PROXY}/v1`, apiKey: "unused", maxRetries: 0, timeout: 300_000 });
const messages = [{ role: "user", content: "Name a colour and say why you like it, in one sentence." }];
const headers = { "x-bon-n": "3", "cache-control": "no-store" };

test("non-streaming and streaming calls return the same winner", async () => {
  const { data, response } = await client.chat.completions
    .create({ model: "smollm2", messages, max_tokens: 32, seed: 7 }, { headers })
    .withResponse();
  assert.equal(response.headers.get("x-bon-n"), "3");
  assert.equal(response.headers.get("x-bon-scores").split(",").length, 3);
  const text = data.choices[0].message.content;
  assert.ok(text.length > 0);

  const stream = await client.chat.completions.create(
    { model: "smollm2", messages, max_tokens: 32, seed: 7, stream: true, stream_options: { include_usage: true } },
    { headers },
  );
  let streamed = "";
  let pieces = 0;
  let last;
  for await (const chunk of stream) {
    const delta = chunk.choices[0]?.delta?.content;
    if (delta) {
      streamed += delta;
      pieces += 1;
    }
    last = chunk;
  }
  assert.equal(streamed, text);
  assert.ok(pieces > 1);
  assert.equal(last.usage.completion_tokens, data.usage.completion_tokens);
  assert.equal(last.bon.winner, Number(response.headers.get("x-bon-winner")));
});

test("a bad N is a 400 BadRequestError", async () => {
  await assert.rejects(
    client.chat.completions.create({ model: "smollm2", messages }, { headers: { "x-bon-n": "99" } }),
    (err) => err instanceof OpenAI.BadRequestError && err.status === 400,
  );
});

test("responses.create and the responses.stream helper return the same Best-of-N winner", async () => {
  const ask = { model: "smollm2", input: "Name a colour and say why you like it, in one sentence.", max_output_tokens: 200, seed: 8 };
  const { data, response } = await client.responses.create(ask, { headers: { "x-bon-n": "3" } }).withResponse();
  assert.equal(response.headers.get("x-bon-n"), "3");
  assert.equal(data.object, "response");
  assert.ok(data.output_text.length > 0);

  const stream = client.responses.stream(ask, { headers: { "x-bon-n": "3" } });
  let streamed = "";
  let deltas = 0;
  for await (const event of stream) {
    if (event.type === "response.output_text.delta") {
      streamed += event.delta;
      deltas += 1;
    }
  }
  const final = await stream.finalResponse();
  assert.ok(deltas > 1);
  assert.equal(streamed, data.output_text);
  assert.equal(final.output_text, data.output_text);
  assert.equal(final.bon.winner, Number(response.headers.get("x-bon-winner")));
});

test("bad Responses input is a 400 BadRequestError; stored state is the upstream's to refuse", async () => {
  await assert.rejects(
    client.responses.create({ model: "smollm2", input: [{ role: "user", content: 5 }] }),
    (err) => err instanceof OpenAI.BadRequestError && err.param === "input[0].content",
  );
  await assert.rejects(
    client.responses.create({ model: "smollm2", input: "Hi", previous_response_id: "resp_1" }),
    (err) => err instanceof OpenAI.BadRequestError && err.headers.get("x-bon-selection") === "passthrough",
  );
});

test("embeddings pass through to the upstream behind the proxy's key", async () => {
  const pass = new OpenAI({ baseURL: `${process.env.BON_E2E_PASS_PROXY}/v1`, apiKey: "e2e-key", maxRetries: 0 });
  const direct = new OpenAI({ baseURL: `${process.env.BON_E2E_EMBED_UPSTREAM}/v1`, apiKey: "unused", maxRetries: 0 });
  const input = ["The cat found a key.", "Paris"];
  const through = await pass.embeddings.create({ model: "smollm2", input, encoding_format: "float" });
  const straight = await direct.embeddings.create({ model: "smollm2", input, encoding_format: "float" });
  assert.equal(through.data.length, 2);
  assert.deepEqual(through.data.map((d) => d.embedding), straight.data.map((d) => d.embedding));
  const wrong = new OpenAI({ baseURL: `${process.env.BON_E2E_PASS_PROXY}/v1`, apiKey: "wrong", maxRetries: 0 });
  await assert.rejects(wrong.embeddings.create({ model: "smollm2", input }), (err) => err instanceof OpenAI.AuthenticationError);
});
