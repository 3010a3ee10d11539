// Unit tests for static/reducer.js (the stream's event handling). Run: node --test tests/js/
import { test, describe } from "node:test";
import assert from "node:assert/strict";

import { HANDLED_EVENT_TYPES, REPAIR_NOTICE, initialState, reduce, resumeState, thinkingMs } from "../../static/reducer.js";

const base = {
  title: "Blue Harbor",
  summary: "A drill",
  roles: [{ name: "Commander", description: "Leads" }],
  steps: [{ title: "Alarm", description: "It rings" }],
};

/** Feed [type, data, t?] tuples through the reducer, returning every state. */
function run(events, init = initialState({ scenario: base })) {
  const states = [init];
  for (const [type, data, t] of events) states.push(reduce(states.at(-1), { type, data, t: t ?? states.length * 10 }));
  return states;
}
const last = (events, init) => run(events, init).at(-1);

describe("reducer", () => {
  test("handles exactly the nine event types, in the protocol's order", () => {
    assert.deepEqual([...HANDLED_EVENT_TYPES], ["start", "reasoning", "chat", "scenario_delta", "scenario_patch", "scenario", "repair", "error", "done"]);
    assert.ok(Object.isFrozen(HANDLED_EVENT_TYPES));
  });

  test("every handled type changes the state; an unknown type does not", () => {
    const s0 = initialState({ scenario: base });
    const samples = {
      start: { request_id: "r1", intent: "chat", model: "m", provider: "p" },
      reasoning: { content: "hmm" },
      chat: { content: "Hi", streaming: true },
      scenario_delta: { content: "[" },
      scenario_patch: { op: { op: "replace", path: "/title", value: "X" }, index: 0 },
      scenario: { scenario: { title: "X" }, changes: [{ op: "replace", path: "/title" }] },
      repair: { attempt: 1, reason: "bad path" },
      error: { code: "upstream_timeout", message: "slow", retryable: true },
      done: { finish_reason: "stop", usage: null, timings: {}, repairs: 0 },
    };
    for (const type of HANDLED_EVENT_TYPES) assert.notEqual(reduce(s0, { type, data: samples[type], t: 1 }), s0, type);
    assert.equal(reduce(s0, { type: "mystery", data: { a: 1 }, t: 1 }), s0);
    assert.equal(reduce(s0, { type: "chat", data: null, t: 1 }), s0);
  });

  test("never mutates the state it is given", () => {
    const s0 = initialState({ scenario: base });
    const frozen = JSON.stringify(s0);
    const states = run(
      [
        ["start", { request_id: "r", intent: "modify" }],
        ["reasoning", { content: "a" }],
        ["chat", { content: "b" }],
        ["scenario_patch", { op: { op: "add", path: "/roles/-", value: { name: "Journalist" } }, index: 0 }],
        ["scenario", { scenario: base, changes: [] }],
        ["done", { finish_reason: "stop" }],
      ],
      s0,
    );
    assert.equal(JSON.stringify(s0), frozen);
    assert.equal(JSON.stringify(base.roles), JSON.stringify([{ name: "Commander", description: "Leads" }]));
    assert.equal(states.length, 7);
  });

  test("start, chat and done: text accumulates in order, done ends the run", () => {
    const s = last([
      ["start", { request_id: "abc", intent: "explain", model: "m1", provider: "offline" }],
      ["chat", { content: "Hel" }],
      ["chat", { content: "lo" }],
      ["chat", { content: "" }],
      ["done", { finish_reason: "stop", timings: { ttft_ms: 3 } }],
      ["chat", { content: " late" }],
    ]);
    assert.equal(s.text, "Hello");
    assert.equal(run([["chat", { content: "Hel" }], ["chat", { content: "lo" }]]).at(-1).delta, "lo", "delta: what the last frame added");
    assert.equal(s.intent, "explain");
    assert.equal(s.requestId, "abc");
    assert.equal(s.provider, "offline");
    assert.equal(s.finished, true);
    assert.equal(s.cutOff, false);
  });

  test("a chat cut by the output limit is marked cut off", () => {
    const s = last([
      ["chat", { content: "partial" }],
      ["done", { finish_reason: "length" }],
    ]);
    assert.equal(s.cutOff, true);
    assert.equal(s.text, "partial");
  });

  test("reasoning: open while it streams, folded at the first answer text, with its duration", () => {
    const states = run([
      ["reasoning", { content: "Let me " }, 100],
      ["reasoning", { content: "think." }, 400],
      ["chat", { content: "Answer" }, 900],
      ["done", { finish_reason: "stop" }, 950],
    ]);
    assert.equal(states[1].reasoning.open, true);
    assert.equal(states[2].reasoning.text, "Let me think.");
    assert.equal(states[2].reasoning.open, true);
    assert.equal(thinkingMs(states[2].reasoning, 700), 600);
    assert.equal(states[3].reasoning.open, false);
    assert.equal(states[3].reasoning.endedAt, 900);
    assert.equal(thinkingMs(states[4].reasoning, 5000), 800);
    assert.equal(states[3].text, "Answer");
    assert.ok(!states[3].text.includes("think"), "thinking is never part of the answer");
  });

  test("withheld reasoning says the model thinks without its text", () => {
    const s = last([["reasoning", { content: "", withheld: true }, 5]]);
    assert.equal(s.reasoning.withheld, true);
    assert.equal(s.reasoning.text, "");
    assert.equal(s.reasoning.open, true);
    assert.equal(s.reasoning.frames, 1);
  });

  test("scenario_patch builds a preview from the request's scenario; scenario replaces it", () => {
    const states = run([
      ["scenario_delta", { content: '[{"op":"add","path":"/roles/-","value":{"name":"Journalist"}}' }],
      ["scenario_patch", { op: { op: "add", path: "/roles/-", value: { name: "Journalist" } }, index: 0 }],
      ["scenario_patch", { op: { op: "replace", path: "/title", value: "Red Harbor" }, index: 1 }],
      ["scenario", { scenario: { ...base, title: "Red Harbor" }, changes: [{ op: "replace", path: "/title", text: "renamed the title" }] }],
      ["done", { finish_reason: "stop" }],
    ]);
    const p1 = states[2].preview;
    assert.equal(p1.doc.roles.length, 2);
    assert.equal(p1.doc.roles[1].name, "Journalist");
    assert.equal(p1.last, "/roles/1", "/- resolves to the index the role landed at");
    const p2 = states[3].preview;
    assert.equal(p2.doc.title, "Red Harbor");
    assert.equal(p2.last, "/title");
    assert.equal(p2.ops.length, 2);
    assert.equal(states[3].block.open, true);
    assert.equal(base.roles.length, 1, "the base is untouched");
    const s = states[4];
    assert.equal(s.preview, null);
    assert.equal(s.result.scenario.title, "Red Harbor");
    assert.equal(s.result.changes[0].text, "renamed the title");
    assert.equal(s.block.open, false);
  });

  test("a patch our copy cannot apply keeps the preview and notes why", () => {
    const s = last([
      ["scenario_patch", { op: { op: "replace", path: "/title", value: "A" }, index: 0 }],
      ["scenario_patch", { op: { op: "remove", path: "/steps/9" }, index: 1 }],
    ]);
    assert.equal(s.preview.doc.title, "A");
    assert.equal(s.preview.ops.length, 1);
    assert.match(s.preview.error, /steps/);
  });

  test("repair drops the preview and says the edit is being fixed; the next answer previews afresh", () => {
    const states = run([
      ["scenario_delta", { content: "[" }],
      ["scenario_patch", { op: { op: "replace", path: "/title", value: "Wrong" }, index: 0 }],
      ["repair", { attempt: 1, reason: "/steps/7: no such step" }],
      ["scenario_patch", { op: { op: "replace", path: "/summary", value: "Fixed" }, index: 0 }],
    ]);
    const r = states[3];
    assert.equal(r.preview, null);
    assert.equal(r.block.open, false);
    assert.equal(r.block.text, "");
    assert.deepEqual(r.repairs, [{ attempt: 1, reason: "/steps/7: no such step" }]);
    assert.equal(r.notice.text, REPAIR_NOTICE);
    assert.match(REPAIR_NOTICE, /did not apply; asking it to fix it/);
    const after = states[4].preview.doc;
    assert.equal(after.title, "Blue Harbor", "the dropped preview's operation is not carried over");
    assert.equal(after.summary, "Fixed");
  });

  test("error drops the preview and keeps the text; invalid_scenario says the scenario is unchanged", () => {
    const s = last([
      ["chat", { content: "Here it is" }],
      ["scenario_delta", { content: "{" }],
      ["scenario_patch", { op: { op: "replace", path: "/title", value: "X" }, index: 0 }],
      ["error", { code: "invalid_scenario", message: "bad", retryable: false }],
      ["done", { finish_reason: "error" }],
    ]);
    assert.equal(s.preview, null);
    assert.equal(s.result, null);
    assert.equal(s.text, "Here it is");
    assert.deepEqual(s.error, { code: "invalid_scenario", message: "bad", retryable: false, retryAfter: null });
    assert.equal(s.notice.kind, "error");
    assert.match(s.notice.text, /unchanged/);
  });

  test("an error's retry_after is kept; an error without a block leaves the panel alone", () => {
    const s = last([["error", { code: "rate_limited", message: "wait", retryable: true, retry_after: 3 }]]);
    assert.equal(s.error.retryAfter, 3);
    assert.equal(s.notice, null);
  });
});

describe("frame numbers: a join's replay is applied once", () => {
  const frames = [
    ["start", { request_id: "r", intent: "modify" }],
    ["chat", { content: "One " }],
    ["chat", { content: "two " }],
    ["scenario", { scenario: { ...base, title: "Renamed" }, changes: [{ op: "replace", path: "/title" }] }],
    ["chat", { content: "three." }],
    ["done", { finish_reason: "stop" }],
  ].map(([type, data], i) => ({ type, data, t: i, seq: i + 1 }));
  const feed = (state, list) => list.reduce((s, e) => reduce(s, e), state);

  test("frames at or below the last applied number change nothing", () => {
    const uninterrupted = feed(initialState({ scenario: base }), frames);
    assert.equal(uninterrupted.text, "One two three.");
    assert.equal(uninterrupted.seq, 6);
    // Cut after frame 3, then a join that replays from frame 2 (overlapping): same end state.
    const cut = feed(initialState({ scenario: base }), frames.slice(0, 3));
    assert.equal(cut.seq, 3);
    const s3 = reduce(cut, frames[1]);
    assert.equal(s3, cut, "an old frame returns the very same state");
    const joined = feed(cut, frames.slice(1));
    assert.equal(joined.text, uninterrupted.text);
    assert.deepEqual(joined.result, uninterrupted.result);
    assert.equal(joined.finished, true);
  });

  test("a second scenario frame is never applied", () => {
    const s = feed(initialState({ scenario: base }), frames.slice(0, 4));
    const again = reduce(s, { type: "scenario", data: { scenario: { title: "Other" }, changes: [] }, seq: 9 });
    assert.equal(again.result, s.result);
    assert.equal(again.seq, 9);
  });

  test("frames without a number (a scripted stream) are applied as before", () => {
    const s = feed(initialState(), [{ type: "chat", data: { content: "a" } }, { type: "chat", data: { content: "a" } }]);
    assert.equal(s.text, "aa");
    assert.equal(s.seq, 0);
  });

  test("resumeState continues a saved answer after a reload", () => {
    // Saved after frame 4: text "One two ", the scenario applied.
    const resumed = resumeState({ scenario: base, text: "One two ", seq: 4, intent: "modify", applied: true });
    assert.equal(resumed.resumedAfter, 4);
    // The join replays from frame 2 (the record was behind): nothing twice, nothing lost.
    const s = feed(resumed, frames.slice(1));
    assert.equal(s.text, "One two three.");
    assert.equal(s.delta, "three.");
    assert.equal(s.result.earlier, true, "the scenario frame was not applied a second time");
    assert.equal(s.finished, true);
    assert.equal(s.intent, "modify");
    // Saved before the scenario frame: it is applied when it comes.
    const early = feed(resumeState({ scenario: base, text: "One ", seq: 2 }), frames.slice(2));
    assert.equal(early.result.scenario.title, "Renamed");
    assert.equal(early.text, "One two three.");
  });
});
