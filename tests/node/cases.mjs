// One Vercel AI SDK call against a live gateway, printed as one JSON line for tests/test_ai_sdk.py.
//
//   GATEWAY_URL=http://127.0.0.1:8000 GATEWAY_TOKEN=... node cases.mjs '{"face": "messages", "case": "stream", ...}'
//
// face: "responses" (@ai-sdk/openai, the Responses API), "chat" (@ai-sdk/openai-compatible, Chat Completions) or
// "messages" (@ai-sdk/anthropic, the Messages API). case: "generate", "stream", "object" or "tools".
// model, prompt: what to ask; stream: stream the object or tools case; sky: what the tool answers. fallbacks: the
// gateway's chain, as its extra body field where the provider can send one, else as the x-gateway-fallbacks
// header; options: the provider's own options.
import { createAnthropic } from "@ai-sdk/anthropic";
import { createOpenAI } from "@ai-sdk/openai";
import { createOpenAICompatible } from "@ai-sdk/openai-compatible";
import { generateText, Output, stepCountIs, streamText, tool } from "ai";
import { z } from "zod";

const baseURL = `${process.env.GATEWAY_URL}/v1`;
const apiKey = process.env.GATEWAY_TOKEN;
// The tests' own provider name for Chat Completions: its providerOptions key, whose extra keys reach the body.
const CHAT = "gateway";

function model(face, id, fallbacks) {
  // The providers that cannot add a body field send the chain as a header, which every provider can set.
  const headers = fallbacks === undefined ? undefined : { "x-gateway-fallbacks": fallbacks.join(",") };
  if (face === "responses") return createOpenAI({ baseURL, apiKey, headers })(id);
  if (face === "chat") {
    // Both off by default: without them no usage while streaming, and a schema is sent as bare JSON mode.
    const options = { includeUsage: true, supportsStructuredOutputs: true };
    return createOpenAICompatible({ name: CHAT, baseURL, apiKey, ...options })(id);
  }
  if (face === "messages") return createAnthropic({ baseURL, apiKey, headers })(id);
  throw new Error(`unknown face ${face}`);
}

// Only @ai-sdk/openai-compatible passes unknown provider options on as body fields (the gateway's `fallbacks`);
// @ai-sdk/openai and @ai-sdk/anthropic validate theirs against their own schemas and have no way to add one.
// `options` are the provider's own options (e.g. @ai-sdk/anthropic's structuredOutputMode).
const OWN = { responses: "openai", chat: CHAT, messages: "anthropic" };

function providerOptions(face, fallbacks, options) {
  const inBody = fallbacks !== undefined && face === "chat";
  const own = { ...options, ...(inBody ? { fallbacks } : {}) };
  return Object.keys(own).length ? { [OWN[face]]: own } : undefined;
}

const Fox = z.object({ name: z.string(), facts: z.array(z.string()) });

function usageOf(u) {
  return { input: u.inputTokens ?? null, output: u.outputTokens ?? null, total: u.totalTokens ?? null };
}

// The stream's error parts, which the promises would otherwise only report as "no output generated".
async function drain(r) {
  for await (const part of r.fullStream) if (part.type === "error") throw part.error;
}

async function generate(c) {
  const r = await generateText(c.call);
  return { text: r.text, finish: r.finishReason, usage: usageOf(r.usage), body: r.response.body ?? null };
}

async function stream(c) {
  const r = streamText({ ...c.call, includeRawChunks: true });
  const parts = [];
  let text = "";
  // Read the full stream: text deltas build the answer, raw chunks show what the gateway sent alongside.
  for await (const part of r.fullStream) {
    if (part.type === "text-delta") text += part.text;
    else if (part.type === "raw") parts.push(part.rawValue);
    else if (part.type === "error") throw part.error;
  }
  return {
    text,
    final: await r.text,
    finish: await r.finishReason,
    usage: usageOf(await r.totalUsage),
    raw: parts,
  };
}

async function object(c) {
  const call = { ...c.call, output: Output.object({ schema: Fox, name: "Fox" }) };
  if (!c.stream) {
    const r = await generateText(call);
    return { object: r.output, text: r.text, finish: r.finishReason, usage: usageOf(r.usage) };
  }
  const r = streamText(call);
  let partials = 0;
  for await (const _ of r.partialOutputStream) partials += 1;
  await drain(r);
  const [output, text, finish, usage] = await Promise.all([r.output, r.text, r.finishReason, r.usage]);
  return { object: output, text, partials, finish, usage: usageOf(usage) };
}

async function tools(c) {
  const executed = [];
  const call = {
    ...c.call,
    tools: {
      get_weather: tool({
        description: "The weather in a city.",
        inputSchema: z.object({ city: z.string() }),
        execute: async ({ city }) => {
          executed.push(city);
          return { city, sky: c.sky };
        },
      }),
    },
    stopWhen: stepCountIs(4),
  };
  // Streaming, the promises resolve once the whole multi-step stream has been read.
  const r = c.stream ? streamText(call) : await generateText(call);
  if (c.stream) await drain(r);
  const steps = await r.steps;
  return {
    text: await r.text,
    finish: await r.finishReason,
    executed,
    steps: steps.map((s) => ({ finish: s.finishReason, calls: s.toolCalls.map((t) => t.toolName) })),
    // What the SDK added to the requests on its own (the Responses API's `include`).
    include: steps.map((s) => requestBody(s)?.include ?? null),
    usage: usageOf(await r.totalUsage),
  };
}

function requestBody(step) {
  const body = step.request?.body;
  return typeof body === "string" ? JSON.parse(body) : body;
}

const CASES = { generate, stream, object, tools };

async function main() {
  const args = JSON.parse(process.argv[2]);
  const call = {
    model: model(args.face, args.model, args.face === "chat" ? undefined : args.fallbacks),
    prompt: args.prompt,
    maxRetries: 0,
    providerOptions: providerOptions(args.face, args.fallbacks, args.options),
  };
  const out = await CASES[args.case]({ ...args, call });
  process.stdout.write(`${JSON.stringify({ ok: true, ...out })}\n`);
}

main().catch((err) => {
  // The test reads why it failed from the same line; a status and the gateway's body if there was one.
  const said = { ok: false, error: String(err), status: err.statusCode ?? null, body: err.responseBody ?? null };
  process.stdout.write(`${JSON.stringify(said)}\n`);
  process.exitCode = 1;
});
