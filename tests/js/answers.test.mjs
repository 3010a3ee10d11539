// Unit tests for the answer fields of static/store.js: Regenerate's variants, the run an answer
// came from, the "interrupted" status, and what is sent back as history. Run: node --test tests/js/
import { test, describe, beforeEach } from "node:test";
import assert from "node:assert/strict";

const memory = new Map();
globalThis.localStorage = {
  getItem: (k) => (memory.has(k) ? memory.get(k) : null),
  setItem: (k, v) => memory.set(k, String(v)),
  removeItem: (k) => memory.delete(k),
};
const { beginVariant, buildHistory, emptyState, loadState, saveState, showVariant } = await import("../../static/store.js");

describe("answers", () => {
  beforeEach(() => memory.clear());

  test("Regenerate keeps the old answer reachable; switching shows either; both survive a reload", () => {
    const state = emptyState();
    const q = { id: "u1", role: "user", content: "Explain it", status: "complete" };
    const a = { id: "a1", role: "assistant", content: "First answer.", status: "complete", intent: "explain", run: { id: "r1", seq: 40 } };
    state.messages = [q, a];
    beginVariant(a);
    assert.equal(a.content, "");
    assert.equal(a.status, "streaming");
    assert.equal(a.run, undefined, "the new answer has no run yet");
    assert.equal(a.variants.length, 2);
    assert.equal(a.variant, 1);
    a.content = "Second answer.";
    a.status = "complete";
    // While the second is shown, the history sends it.
    assert.deepEqual(buildHistory(state.messages).map((m) => m.content), ["Explain it", "Second answer."]);
    assert.ok(showVariant(a, 0));
    assert.equal(a.content, "First answer.");
    assert.equal(a.intent, "explain");
    assert.deepEqual(a.run, { id: "r1", seq: 40 });
    assert.deepEqual(buildHistory(state.messages).map((m) => m.content), ["Explain it", "First answer."]);
    assert.equal(showVariant(a, 0), false, "already shown");
    assert.equal(showVariant(a, 5), false, "no such variant");
    assert.ok(saveState(state));
    const back = loadState();
    const b = back.messages[1];
    assert.equal(b.variant, 0);
    assert.equal(b.content, "First answer.");
    assert.deepEqual(b.variants.map((v) => v.content), ["First answer.", "Second answer."]);
    assert.ok(showVariant(b, 1));
    assert.equal(b.content, "Second answer.");
  });

  test("a third Regenerate adds a third variant; the one shown when regenerating keeps its latest text", () => {
    const a = { id: "a1", role: "assistant", content: "One", status: "complete" };
    beginVariant(a);
    a.content = "Two";
    a.status = "stopped";
    beginVariant(a);
    a.content = "Three";
    a.status = "complete";
    assert.deepEqual(a.variants.map((v) => v.content), ["One", "Two", ""]);
    showVariant(a, 1);
    assert.deepEqual(a.variants.map((v) => v.content), ["One", "Two", "Three"]);
    assert.equal(a.status, "stopped");
  });

  test("a streaming answer loads as stopped with its run; interrupted is kept", () => {
    const state = emptyState();
    state.messages = [
      { id: "u1", role: "user", content: "q", status: "complete" },
      { id: "a1", role: "assistant", content: "part", status: "streaming", run: { id: "r9", seq: 12 } },
      { id: "a2", role: "assistant", content: "cut", status: "interrupted", run: { id: "r10", seq: "x" } },
    ];
    saveState(state);
    const back = loadState();
    assert.equal(back.messages[1].status, "stopped");
    assert.deepEqual(back.messages[1].run, { id: "r9", seq: 12 });
    assert.equal(back.messages[2].status, "interrupted");
    assert.equal(back.messages[2].run, undefined, "a malformed run is dropped");
  });

  test("an answer retried below is not sent back; a stopped one is", () => {
    const msgs = [
      { role: "user", content: "q1", status: "complete" },
      { role: "assistant", content: "half", status: "stopped", retried: true },
      { role: "assistant", content: "whole", status: "complete" },
      { role: "user", content: "q2", status: "complete" },
      { role: "assistant", content: "partial", status: "stopped" },
    ];
    assert.deepEqual(buildHistory(msgs).map((m) => m.content), ["q1", "whole", "q2", "partial"]);
  });
});
